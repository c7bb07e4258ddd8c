"""Logits for a share of the target positions (TrainConfig.logit_share): the same loss and gradients
while every valid token fits, and what does not fit is counted, never silently dropped."""

import jax
import numpy as np

from training.objective import kept_positions
from training.trainer import TrainConfig, Trainer


def test_kept_positions_are_the_valid_ones_first_in_order():
    mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]], bool)
    order, kept, cut = kept_positions(mask, 0.5)  # 6 of 12 positions
    assert order.tolist() == [0, 1, 4, 8, 9, 10] and kept.all() and int(cut) == 0
    order, kept, cut = kept_positions(mask, 0.25)  # 3 positions for 6 valid tokens
    assert order.tolist() == [0, 1, 4] and int(cut) == 3
    order, kept, _ = kept_positions(mask, 0.75)  # room left over: padding, masked
    assert kept.tolist() == [True] * 6 + [False] * 3


def test_a_share_that_holds_every_token_gives_the_same_loss_and_gradients(tiny_cfg):
    from uio2_core.model import build_model

    rng = np.random.default_rng(0)
    batch = {"text": rng.integers(3, 1000, (4, 8)).astype(np.int32),
             "targets/text": np.array([[32005, 32100, 1, 0, 0, 0], [32900, 1, 0, 0, 0, 0],
                                       [7, 8, 9, 1, 0, 0], [5, 1, 0, 0, 0, 0]], np.int32)}  # fmt: skip
    model = build_model(tiny_cfg, seed=0, with_vqgan=False)
    out = {}
    for share in (None, 0.5, 0.25):
        trainer = Trainer(model, TrainConfig(logit_share=share, location_sigma=4.0))
        (loss, metrics), grads = jax.jit(jax.value_and_grad(trainer._loss, has_aux=True))(
            trainer.state["params"], batch
        )
        out[share] = loss, grads, metrics
    np.testing.assert_allclose(out[0.5][0], out[None][0], rtol=1e-6)
    for g, h in zip(jax.tree.leaves(out[None][1]), jax.tree.leaves(out[0.5][1]), strict=True):
        np.testing.assert_allclose(h, g, rtol=1e-4, atol=1e-7)
    assert float(out[0.5][2]["logit_cut_tokens"]) == 0
    assert float(out[0.25][2]["logit_cut_tokens"]) == 11 - 6  # 11 valid tokens, 6 positions
    assert "logit_cut_tokens" not in out[None][2]
