"""Per-device bytes of parameters and optimiser state, the state replicated (the old layout) vs sharded
like its parameters, for the released sizes on cluster-sized meshes. Abstract shapes only (nothing
allocated, nothing compiled: `uio2 plan` compiles the whole step).

    python benchmarks/opt_state_memory.py [--models large,xl,xxl] [--meshes 1,8,1 1,32,1 1,16,2]

Prints one JSON object per (model, mesh).
"""

import argparse
import json

import jax
import numpy as np
from flax import nnx
from jax.sharding import AbstractMesh, NamedSharding
from jax.sharding import PartitionSpec as P

from training.optimizer import OptimizerConfig, make_optimizer
from training.sharding import AXES, opt_state_shardings, param_shardings
from uio2_core.config import get_config
from uio2_core.model import abstract_model


def per_device(tree, shardings) -> int:
    pairs = zip(jax.tree.leaves(tree), jax.tree.leaves(shardings), strict=True)
    return sum(int(np.prod(s.shard_shape(x.shape))) * x.dtype.itemsize for x, s in pairs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", default="large,xl,xxl")
    p.add_argument("--meshes", nargs="+", default=["1,8,1", "1,32,1", "1,16,2"])
    args = p.parse_args()
    for name in args.models.split(","):
        model = abstract_model(get_config(name), with_vqgan=False)
        params = nnx.to_pure_dict(nnx.split(model, nnx.Param, ...)[1])
        opt = jax.eval_shape(make_optimizer(OptimizerConfig(), params).init, params)
        for spec in args.meshes:
            mesh = AbstractMesh(tuple(int(x) for x in spec.split(",")), AXES)
            ps = param_shardings(params, mesh)
            whole = NamedSharding(mesh, P())
            replicated = jax.tree.map(lambda _, w=whole: w, opt)
            print(json.dumps({
                "benchmark": "opt_state_memory", "model": name, "mesh": spec,
                "parameters_per_device": per_device(params, ps),
                "opt_state_per_device_replicated": per_device(opt, replicated),
                "opt_state_per_device_sharded": per_device(opt, opt_state_shardings(opt, params, ps, mesh)),
            }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
