"""Partition rules on every parameter of every released size, and optimiser-state shardings that follow
the parameters, all on abstract shapes (nnx.eval_shape) and abstract meshes: nothing is allocated."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as P

from training.optimizer import OptimizerConfig, make_optimizer
from training.sharding import AXES, opt_state_shardings, param_shardings, partition_report

MESHES = [(8, 1, 1), (1, 8, 1), (1, 1, 8), (2, 2, 2), (1, 4, 2), (1, 16, 2)]


@pytest.fixture(scope="module")
def abstract_params():
    from uio2_core.config import get_config
    from uio2_core.model import abstract_model

    out = {}
    for name in ("large", "xl", "xxl"):
        model = abstract_model(get_config(name), with_vqgan=False)
        out[name] = nnx.to_pure_dict(nnx.split(model, nnx.Param, ...)[1])
    return out


@pytest.mark.parametrize("name", ["large", "xl", "xxl"])
def test_every_parameter_of_every_released_size_divides(abstract_params, name):
    for mesh in MESHES:
        report = partition_report(abstract_params[name], AbstractMesh(mesh, AXES))
        assert report.fallbacks == [], (name, mesh, report.summary())
        shards = mesh[1] * mesh[2]  # the data axis replicates (pure data parallelism keeps whole copies)
        if shards > 1:  # only norms, biases, position tables stay whole on every device: under 1%
            assert report.replicated_bytes < 0.01 * report.total_bytes, (name, mesh, report.summary())
        assert report.per_device_bytes <= report.total_bytes / shards + report.replicated_bytes, (name, mesh)


def test_a_dimension_that_does_not_divide_warns_and_reports_its_bytes(abstract_params):
    params, mesh = abstract_params["large"], AbstractMesh((1, 3, 1), AXES)  # d_model 1024 % 3 != 0
    report = partition_report(params, mesh)
    assert report.fallbacks and report.fallback_bytes > 0.5 * report.total_bytes
    assert any(f[0] == "encoder/layers_0/mlp/wi_0/kernel" for f in report.fallbacks)
    with pytest.warns(UserWarning, match="replicated because a dimension does not divide"):
        param_shardings(params, mesh)


def test_optimiser_state_follows_its_parameter(abstract_params):
    params, mesh = abstract_params["large"], AbstractMesh((1, 8, 1), AXES)
    shardings = param_shardings(params, mesh)
    opt = jax.eval_shape(make_optimizer(OptimizerConfig(), params).init, params)
    sharded = opt_state_shardings(opt, params, shardings, mesh)
    specs = {jax.tree_util.keystr(p): s.spec for p, s in jax.tree_util.tree_flatten_with_path(sharded)[0]}
    leaf = "['encoder']['layers_0']['mlp']['wi_0']['kernel']"  # [1024, 2816], rule (fsdp, model)

    def spec_of(kind: str) -> P:
        (spec,) = [v for k, v in specs.items() if k.endswith(f".{kind}{leaf}")]
        return spec

    # v_row drops the largest axis (2816) and keeps fsdp's; v_col drops 1024 and keeps model's;
    # the momentum (ema) is full size and takes the parameter's spec
    assert spec_of("v_row") == P("fsdp")
    assert spec_of("v_col") == P("model")
    assert spec_of("ema") == P("fsdp", "model")
    # per device, the optimiser state is about an eighth of its whole size
    whole = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(opt))
    per_device = sum(
        int(np.prod(s.shard_shape(x.shape))) * x.dtype.itemsize
        for x, s in zip(jax.tree.leaves(opt), jax.tree.leaves(sharded), strict=True)
    )
    assert per_device < 0.15 * whole
