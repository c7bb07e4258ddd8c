"""What activation checkpointing costs: the real train step with `--remat none` and `--remat layer`,
side by side in one run, against a dense-matmul peak measured in the same run.

    python benchmarks/train_step_remat.py                          # large, 4 layers, batch 2, all inputs
    python benchmarks/train_step_remat.py --model tiny --batch 4   # quick check

Both trainers start from the same seed, so their first losses must agree (the JSON says whether they
do). Steps are timed alternately (none, layer, none, layer, ...) so that load from other processes on
a shared machine falls on both alike; the ratio is the figure to quote. FLOPs are XLA's cost analysis
of each compiled step: remat's recomputed forward shows up as extra FLOPs, not only as extra time.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from agent.benchmarking import bench_config, device_name, matmul_peak_flops, synthetic_batch
from training.sharding import shard_batch
from training.trainer import TrainConfig, Trainer
from uio2_core.model import build_model

MODES = ("none", "layer")


class _Stepper:
    """One mode's trainer, its step compiled once (the compiled executable is called directly, so
    the cost analysis and the timed steps are the same compilation)."""

    def __init__(self, cfg, remat: str, batch: dict) -> None:
        trainer = Trainer(build_model(cfg, seed=0, with_vqgan=False), TrainConfig(steps=10**9, remat=remat))
        self.state = trainer.state
        self.batch = shard_batch({k: np.asarray(v) for k, v in batch.items()}, trainer.mesh)
        start = time.perf_counter()
        self.compiled = trainer._step_fn.lower(self.state, self.batch).compile()
        self.compile_s = time.perf_counter() - start
        cost = self.compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        self.flops = float(cost.get("flops", 0.0))
        self.first_loss = self.step()
        print(
            f"remat {remat}: compiled in {self.compile_s:.0f} s, {self.flops / 1e9:.1f} GFLOP/step, first "
            f"loss {self.first_loss:.4f}",
            file=sys.stderr,
            flush=True,
        )  # progress: a long run on a CPU

    def step(self) -> float:
        """One step; its loss (reading it waits for the step to finish)."""
        self.state, metrics = self.compiled(self.state, self.batch)
        return float(metrics["loss"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="large")
    p.add_argument("--layers", type=int, default=4, help="encoder and decoder layers (0: the release's)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--text-len", type=int, default=64)
    p.add_argument("--target-len", type=int, default=32)
    p.add_argument("--inputs", choices=["text", "all"], default="all")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per mode")
    args = p.parse_args()
    if args.batch < 1 or args.repeats < 1 or args.layers < 0:
        p.error("--batch and --repeats must be >= 1, --layers >= 0")

    cfg = bench_config(args.model, args.layers or None, args.dtype)
    batch = synthetic_batch(cfg, args.batch, args.text_len, args.inputs)
    rng = np.random.default_rng(1)
    batch["targets/text"] = jnp.asarray(rng.integers(3, 32000, size=(args.batch, args.target_len)), jnp.int32)

    steppers: dict[str, _Stepper] = {}
    for mode in MODES:
        steppers[mode] = _Stepper(cfg, mode, batch)
        gc.collect()
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(args.repeats):
        for mode in MODES:
            start = time.perf_counter()
            steppers[mode].step()
            times[mode].append(time.perf_counter() - start)
            print(f"remat {mode}: step {1000 * times[mode][-1]:.0f} ms", file=sys.stderr, flush=True)
    peak = matmul_peak_flops(dtype=jnp.dtype(args.dtype))

    result: dict = {
        "benchmark": "train_step_remat", "model": cfg.name, "dtype": cfg.dtype, "device": device_name(),
        "devices": jax.device_count(), "batch": args.batch, "inputs": args.inputs,
        "text_len": args.text_len, "target_len": args.target_len, "repeats": args.repeats,
        "matmul_peak_gflops": peak / 1e9,
        "first_loss_equal": bool(np.isclose(*(steppers[m].first_loss for m in MODES), rtol=1e-5)),
    }  # fmt: skip
    for mode in MODES:
        seconds, st = statistics.median(times[mode]), steppers[mode]
        result[f"remat_{mode}"] = {
            "first_loss": st.first_loss, "compile_s": st.compile_s, "step_ms": 1000 * seconds,
            "step_ms_all": [round(1000 * t, 1) for t in times[mode]], "step_gflop": st.flops / 1e9,
            "achieved_gflops": st.flops / seconds / 1e9, "fraction_of_matmul_peak": st.flops / seconds / peak,
            # useful work: the no-remat step's FLOPs over this mode's time (recomputation is overhead)
            "model_fraction_of_matmul_peak": steppers["none"].flops / seconds / peak,
        }  # fmt: skip
    none, layer = result["remat_none"], result["remat_layer"]
    result["layer_over_none_step_time"] = layer["step_ms"] / none["step_ms"]
    result["layer_over_none_flops"] = layer["step_gflop"] / none["step_gflop"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
