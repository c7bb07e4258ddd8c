"""Trainer.fit builds batches in a background thread and reads metrics once per log interval: the
losses are those of one synchronous step at a time, and a failing batch is raised, never a hang.
The loss falls on a fixed batch. One trainer (one compile) serves every test here: bfloat16 compute
(`uio2 train --dtype bfloat16`) with packing (`--pack 16,8`: two examples a row)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from training.optimizer import OptimizerConfig
from training.trainer import TrainConfig, Trainer
from uio2_core.model import build_model


def batch_at(position: int) -> dict:
    rng = np.random.default_rng(position)
    targets = rng.integers(32000, 33000, (2, 4)).astype(np.int32)
    targets[:, -1] = 0
    return {"text": rng.integers(3, 1000, (2, 8)).astype(np.int32), "targets/text": targets}


@pytest.fixture(scope="module")
def trainer(tiny_cfg):
    """One trainer for every run here (`_fresh` puts back its initial state). Rows hold 8 prompt and at
    most 3 answer tokens, so the packing budgets fit a pair exactly: no token is cut."""
    cfg = TrainConfig(steps=5, log_every=2, pack=(16, 8),
                      optimizer=OptimizerConfig(learning_rate=3e-2, warmup_steps=2))  # fmt: skip
    t = Trainer(build_model(tiny_cfg.replace(dtype="bfloat16"), with_vqgan=False), cfg)
    t.init = jax.tree.map(jnp.copy, t.state)
    return t


def _fresh(trainer: Trainer, **changes) -> Trainer:
    # laid out as the step's own outputs: another layout of the same values would compile it again
    trainer.state = jax.device_put(jax.tree.map(jnp.copy, trainer.init), trainer.state_shardings)
    trainer.cfg = dataclasses.replace(trainer.cfg, **changes)
    return trainer


def test_prefetched_fit_gives_the_losses_of_single_steps(trainer):
    _fresh(trainer)
    single = [trainer.step(batch_at(k))["loss"] for k in range(5)]
    fits = {}
    for depth in (2, 0):
        history = _fresh(trainer, prefetch=depth, steps=5).fit(batch_at, resume=False, progress=False)
        assert [m["step"] for m in history] == [1, 2, 3, 4, 5]
        fits[depth] = [m["loss"] for m in history]
    assert fits[2] == fits[0] == single
    assert len(set(single)) == 5  # the batches differ: a wrong order would change the losses
    assert all(np.isfinite(single)) and all(m["pack_cut_tokens"] == 0 for m in history)
    assert {x.dtype for x in jax.tree.leaves(trainer.state["params"])} == {jnp.dtype("float32")}


def test_a_failing_batch_is_raised_not_hung(trainer):
    def broken(position: int) -> dict:
        if position == 2:
            raise ValueError("episode 7 is unreadable")
        return batch_at(position)

    with pytest.raises(ValueError, match="episode 7 is unreadable"):
        _fresh(trainer, prefetch=2, steps=5).fit(broken, resume=False, progress=False)
    history = _fresh(trainer, prefetch=2, steps=5).fit(batch_at, resume=False, progress=False)
    assert len(history) == 5  # the trainer (and a new batch thread) still work after the failure


def test_loss_decreases_on_a_fixed_batch(trainer):
    rng = np.random.default_rng(0)
    batch = {"text": rng.integers(3, 1000, (2, 8)).astype(np.int32),
             "targets/text": np.array([[32005, 32100, 1, 0], [32900, 1, 0, 0]], np.int32)}  # fmt: skip
    history = _fresh(trainer, steps=12).fit(lambda _: batch, resume=False, progress=False)
    assert history[-1]["loss"] < 0.3 * history[0]["loss"]
    assert history[-1]["text_accuracy"] == 1.0



def test_a_spent_time_budget_ends_training_with_a_checkpoint(trainer):
    """`max_seconds` (`uio2 train --max-minutes`) stops at the first metrics read after the budget,
    and that step is checkpointed (on_checkpoint runs) as the last step would be."""
    seen: list[int] = []
    t = _fresh(trainer, steps=12, log_every=2, checkpoint_every=10, max_seconds=0.0)
    history = t.fit(batch_at, resume=False, progress=False,
                    on_checkpoint=lambda tr: seen.append(tr.step_count))
    assert [m["step"] for m in history] == [1, 2] and seen == [2] and t.step_count == 2
    history = _fresh(trainer, steps=4, log_every=2, checkpoint_every=10, max_seconds=None).fit(
        batch_at, resume=False, progress=False)
    assert len(history) == 4  # no budget: every step
