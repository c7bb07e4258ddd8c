"""Train-step speed of the real trainer (training.trainer): forward + backward + Adafactor on a mesh.

    python benchmarks/train_step.py --model tiny
    python benchmarks/train_step.py --model tiny --devices 4          # 4 simulated CPU devices
    python benchmarks/train_step.py --model large --layers 4 --batch 2
    python benchmarks/train_step.py --model large --layers 4 --batch 2 --remat layer   # recompute layers
    python benchmarks/train_step.py --data VIMA_DIR,POINTNAV_DIR   # real batches: the data's share of a
                                                                   # step, before/after (train_data.py)

Prints one JSON object: step time, examples/s, the step's FLOPs (XLA's cost analysis), achieved
FLOP/s and that as a fraction of a dense-matmul peak measured in the same run on the same device.
"""

import os
import sys

if "--devices" in sys.argv:  # must be set before jax starts
    _n = sys.argv[sys.argv.index("--devices") + 1]
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={_n}"

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from agent.benchmarking import bench_config, device_name, matmul_peak_flops, median_seconds, synthetic_batch
from training.sharding import shard_batch
from training.trainer import TrainConfig, Trainer
from uio2_core.model import build_model


def main() -> None:
    if "--data" in sys.argv:  # recorded datasets: the host's share of a step (benchmarks/train_data.py)
        from train_data import main as data_main

        return data_main()
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="tiny")
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--devices", type=int, default=None, help="simulated CPU devices (data-parallel mesh)")
    p.add_argument("--text-len", type=int, default=64)
    p.add_argument("--target-len", type=int, default=32)
    p.add_argument("--inputs", choices=["text", "all"], default="all")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--remat", choices=["none", "layer"], default="none", help="activation checkpointing")
    args = p.parse_args()

    cfg = bench_config(args.model, args.layers, args.dtype)
    trainer = Trainer(build_model(cfg, seed=0, with_vqgan=False), TrainConfig(steps=10**9, remat=args.remat))
    batch = synthetic_batch(cfg, args.batch, args.text_len, args.inputs)
    rng = np.random.default_rng(1)
    batch["targets/text"] = jnp.asarray(rng.integers(3, 32000, size=(args.batch, args.target_len)), jnp.int32)
    sharded = shard_batch({k: np.asarray(v) for k, v in batch.items()}, trainer.mesh)
    cost = trainer._step_fn.lower(trainer.state, sharded).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0))
    first = trainer.step(batch)
    seconds = median_seconds(lambda: trainer.step(batch), args.repeats)
    peak = matmul_peak_flops(dtype=jnp.dtype(args.dtype))
    print(json.dumps({
        "benchmark": "train_step", "model": cfg.name, "dtype": cfg.dtype, "device": device_name(),
        "devices": jax.device_count(), "mesh": dict(trainer.mesh.shape), "batch": args.batch,
        "remat": args.remat, "inputs": args.inputs, "target_len": args.target_len,
        "first_loss": first["loss"],
        "step_ms": 1000 * seconds, "examples_per_s": args.batch / seconds, "step_gflop": flops / 1e9,
        "achieved_gflops": flops / seconds / 1e9,
        "matmul_peak_gflops": peak / 1e9, "fraction_of_matmul_peak": flops / seconds / peak,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
