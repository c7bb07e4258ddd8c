"""Activation checkpointing per transformer layer changes memory, never the numbers."""

import jax
import numpy as np
import pytest

from training.trainer import TrainConfig, Trainer


def test_remat_gives_the_same_loss_and_gradients(tiny_cfg):
    from uio2_core.model import build_model

    rng = np.random.default_rng(0)
    batch = {"text": rng.integers(3, 1000, (2, 8)).astype(np.int32),
             "targets/text": np.array([[32005, 32100, 1, 0], [32900, 1, 0, 0]], np.int32)}  # fmt: skip
    model = build_model(tiny_cfg, seed=0, with_vqgan=False)
    out = {}
    for mode in ("none", "layer"):
        trainer = Trainer(model, TrainConfig(remat=mode))
        grad_fn = jax.value_and_grad(trainer._loss, has_aux=True)
        jaxpr = str(jax.make_jaxpr(grad_fn)(trainer.state["params"], batch))
        assert ("remat" in jaxpr or "checkpoint" in jaxpr) == (mode == "layer")
        (loss, _), grads = jax.jit(grad_fn)(trainer.state["params"], batch)
        out[mode] = loss, grads
    np.testing.assert_allclose(out["layer"][0], out["none"][0], rtol=1e-6)
    flat_none = jax.tree_util.tree_leaves_with_path(out["none"][1])
    flat_layer = jax.tree.leaves(out["layer"][1])
    for (path, g), h in zip(flat_none, flat_layer, strict=True):
        np.testing.assert_allclose(h, g, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))
    assert any(float(np.abs(g).max()) > 0 for g in flat_layer)


def test_unknown_remat_mode_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="remat must be one of"):
        Trainer(tiny_model, TrainConfig(remat="everything"))
