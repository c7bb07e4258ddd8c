"""Share of a training step spent building the batch on the host, before and after indexing the data.

    python benchmarks/train_step.py --data VIMA_DIR,POINTNAV_DIR [--model tiny] [--batch 16] [--steps 20]
    python benchmarks/train_step.py --data ... --pack 448,48     # also: packed rows at these budgets
(train_step.py hands `--data` runs to this module.)

Side by side in one run, on the same recorded datasets and the same batch positions:
- before: the batch path of training/data.py before this change (kept here as `CachedEpisodeBatches`):
  an LRU cache of 32 whole episodes, each built by `ExampleBuilder.episode` (full arrays per step),
  so with more episodes than that most rows rebuild an episode to use one step of it; the trainer
  built each batch, then waited for the step (`float()` on the loss).
- after: `TrainingData` (every step indexed once) and `Trainer.fit` with its batch thread.
The batches of both paths are checked equal. Prints one JSON object: host ms a batch (before; after,
on the first pass, where frames are preprocessed, and once they are cached),
device ms a step, the data share of a synchronous step (batch / (batch + step)), and fit's wall ms a
step for the old loop (old batches, no prefetch, metrics read every step) and the new one. With
--pack: valid-token shares (1 - padding) and tokens/s of the unpacked and the packed step.
"""

import argparse
import json
import time
from dataclasses import replace
from functools import lru_cache

import jax
import numpy as np

from agent.benchmarking import device_name, median_seconds
from training.data import ExampleBuilder, TrainingData
from training.run import MAX_FRAMES, TEXT_LEN
from training.trainer import TrainConfig, Trainer, split_batch
from uio2_core.config import get_config
from uio2_core.model import build_model
from uio2_core.vocab import tiny_vocabulary


class CachedEpisodeBatches:
    """training/data.py's batch_at before this change (same sampling; 32 episodes cached)."""

    def __init__(self, data: TrainingData) -> None:
        self.data = data
        self.episode = lru_cache(maxsize=32)(self._build)

    def _build(self, k: int, e: int):
        d = self.data.datasets[k]
        return self.data.builder.episode(d.episode(e), d.episode_extra(e), self.data.families[k])

    def batch_at(self, position: int) -> dict[str, np.ndarray]:
        data, rows = self.data, []
        rng = np.random.default_rng([data.seed, position])
        for _ in range(data.batch_size):
            k = int(rng.choice(len(data.datasets), p=data.weights))
            e, t = data.steps[k][int(rng.integers(len(data.steps[k])))]
            ex = self.episode(k, e)
            rows.append(({key: v[t] for key, v in ex.inputs.items()}, ex.targets[t]))
        batch = {key: np.stack([r[0][key] for r in rows]) for key in rows[0][0]}
        batch["targets/text"] = np.stack([r[1] for r in rows])
        return batch


def _ms_per_batch(batch_at, positions: range) -> float:
    start = time.perf_counter()
    for k in positions:
        batch_at(k)
    return 1000 * (time.perf_counter() - start) / len(positions)


def _fit_ms(trainer: Trainer, batch_at, steps: int, prefetch: int, log_every: int) -> float:
    trainer.cfg = replace(trainer.cfg, steps=steps, prefetch=prefetch, log_every=log_every,
                          checkpoint_every=10**9)  # fmt: skip
    trainer.state["step"] = jax.numpy.zeros_like(trainer.state["step"])
    start = time.perf_counter()
    trainer.fit(batch_at, resume=False, progress=False)
    return 1000 * (time.perf_counter() - start) / steps


def _valid_tokens(trainer: Trainer, batch: dict) -> tuple[int, int, int, int]:
    """(valid encoder tokens, encoder length, valid target tokens, target length) of one batch."""
    inputs, targets, masks, _ = split_batch(batch)
    mask = jax.jit(lambda p, x: trainer.merged_model(p).embed_inputs(x).mask)(trainer.state["params"], inputs)
    return int(mask.sum()), mask.shape[1], int(masks["text"].sum()), targets["text"].shape[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True, help="DATASET_DIR[,DATASET_DIR...] (`uio2 collect` output)")
    p.add_argument("--model", default="tiny")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=20, help="batches timed per path (and steps per fit)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--pack", default=None, help="ENC,DEC budgets: also time the packed step")
    args = p.parse_args()

    paths = [d for d in args.data.split(",") if d]
    cfg = get_config(args.model)
    builder = ExampleBuilder(cfg, tiny_vocabulary(), text_len=TEXT_LEN, max_frames=MAX_FRAMES)
    start = time.perf_counter()
    data = TrainingData(paths, builder, args.batch)
    index_s = time.perf_counter() - start
    old = CachedEpisodeBatches(data)
    positions = range(args.steps)
    for k in range(3):  # the same examples either way
        a, b = old.batch_at(k), data.batch_at(k)
        assert sorted(a) == sorted(b) and all(np.array_equal(a[x], b[x]) for x in a), f"batch {k} differs"
    old.episode.cache_clear()
    data.frames = type(data.frames)(data.frames.max_bytes)  # empty: the first pass preprocesses
    old_ms = _ms_per_batch(old.batch_at, positions)
    new_cold_ms = _ms_per_batch(data.batch_at, positions)
    new_ms = _ms_per_batch(data.batch_at, positions)  # every frame of these batches preprocessed once

    trainer = Trainer(build_model(cfg, seed=0, with_vqgan=False), TrainConfig(steps=args.steps))
    on_device = trainer.put(data.batch_at(0))
    jax.block_until_ready(trainer._dispatch(on_device))  # compile
    device_ms = 1000 * median_seconds(lambda: trainer._dispatch(on_device), args.repeats)
    old.episode.cache_clear()
    fit_old = _fit_ms(trainer, old.batch_at, args.steps, prefetch=0, log_every=1)
    fit_new = _fit_ms(trainer, data.batch_at, args.steps, prefetch=2, log_every=10)
    out = {
        "benchmark": "train_data", "model": cfg.name, "device": device_name(), "batch": args.batch,
        "datasets": [{"path": p, "episodes": d.num_episodes, "steps": len(s)}
                     for p, d, s in zip(paths, data.datasets, data.steps, strict=True)],
        "index_seconds": index_s, "index_mb": data.memory_bytes / 1e6,
        "batch_ms": {"before": old_ms, "after_first_pass": new_cold_ms, "after": new_ms},
        "frame_cache_mb": data.frames.bytes / 1e6,
        "device_step_ms": device_ms,
        "data_share": {"before": old_ms / (old_ms + device_ms), "after": new_ms / (new_ms + device_ms)},
        "fit_ms_per_step": {"before": fit_old, "after": fit_new},
        "fit_overhead_over_device_step": {"before": fit_old / device_ms - 1,
                                          "after": fit_new / device_ms - 1},
    }  # fmt: skip
    if args.pack:
        enc_budget, dec_budget = (int(x) for x in args.pack.split(","))
        counts = np.array([_valid_tokens(trainer, data.batch_at(k)) for k in positions])
        enc_valid, dec_valid = counts[:, 0].sum(), counts[:, 2].sum()
        enc_len, dec_len = counts[0, 1], counts[0, 3]
        n = len(positions) * args.batch
        packed = Trainer(build_model(cfg, seed=0, with_vqgan=False),
                         TrainConfig(steps=args.steps, pack=(enc_budget, dec_budget)))  # fmt: skip
        jax.block_until_ready(packed._dispatch(packed.put(data.batch_at(0))))  # compile
        history = packed.fit(data.batch_at, resume=False, progress=False)
        packed_ms = 1000 * median_seconds(lambda: packed._dispatch(on_device), args.repeats)
        tokens = enc_valid / len(positions) + dec_valid / len(positions)  # valid tokens a step
        out["pack"] = {
            "budgets": [enc_budget, dec_budget], "encoder_len": int(enc_len), "target_len": int(dec_len),
            "valid_share_unpacked": {"encoder": enc_valid / (n * enc_len),
                                     "decoder": dec_valid / (n * dec_len)},
            "valid_share_packed": {"encoder": enc_valid / (n // 2 * enc_budget),
                                   "decoder": dec_valid / (n // 2 * dec_budget)},
            "cut_tokens": sum(m["pack_cut_tokens"] for m in history),
            "step_ms": {"unpacked": device_ms, "packed": packed_ms},
            "valid_tokens_per_s": {"unpacked": tokens / device_ms * 1000,
                                   "packed": tokens / packed_ms * 1000},
        }  # fmt: skip
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
