"""Our orbax checkpoints: params only (full and pruned restore) and a full training state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from uio2_core.checkpoints import ours
from uio2_core.checkpoints.formats import detect_format, load_model
from uio2_core.checkpoints.materialize import load_from_source
from uio2_core.checkpoints.synthetic import random_state_dict
from uio2_core.config import get_config


class _Source:
    def __init__(self, tensors):
        self.name, self.tensors = "memory", tensors

    def shapes(self):
        return {k: v.shape for k, v in self.tensors.items()}

    def dtype(self, key):
        return self.tensors[key].dtype

    def read(self, key):
        return self.tensors[key]

    def release(self, key):
        pass

    def close(self):
        pass


@pytest.fixture(scope="module")
def model():
    cfg = get_config("tiny")
    return load_from_source(_Source(random_state_dict(cfg, seed=2)), cfg, with_vqgan=True)


def _params(model) -> dict:
    return {p: np.asarray(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def test_params_round_trip_and_pruned_restore(tmp_path, model):
    ours.save_params(model, tmp_path / "m")
    assert detect_format(tmp_path / "m") == "ours"
    full = load_model(tmp_path / "m", with_vqgan=True)
    a, b = _params(model), _params(full)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    pruned = load_model(tmp_path / "m", with_vqgan=False)
    assert pruned.target_embedders.image.vqgan is None
    c = _params(pruned)
    assert c and all(np.array_equal(v, a[k]) for k, v in c.items())
    assert not any("vqgan" in str(k) for k in c)


def test_training_state_round_trip(tmp_path, model):
    full = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    params = {
        "encoder": full["encoder"],
        "text_token_embedder": full["text_token_embedder"],
    }  # keeps it quick
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    _, opt_state = tx.update(grads, opt_state, params)
    state = {
        "params": params,
        "opt_state": opt_state,
        "step": jnp.asarray(7, jnp.int32),
        "rng": jax.random.key_data(jax.random.key(3)),
    }
    ours.save_train_state(tmp_path / "t", model.cfg, state, data_position=1234)
    abstract = jax.tree.map(ocp_abstract, state)
    restored, position = ours.restore_train_state(tmp_path / "t", abstract)
    assert position == 1234
    assert int(restored["step"]) == 7
    flat_a, tree_a = jax.tree.flatten(state)
    flat_b, tree_b = jax.tree.flatten(restored)
    assert tree_a == tree_b
    for x, y in zip(flat_a, flat_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert ours.read_config(tmp_path / "t") == model.cfg


def ocp_abstract(x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))
