"""Train-step speed: one jitted forward + backward + Adafactor update on synthetic data.

    python benchmarks/train_step.py --model tiny
    python benchmarks/train_step.py --model large --layers 4 --batch 2

Prints one JSON object: step time, the step's FLOPs (from XLA's cost analysis), achieved FLOP/s
and that as a fraction of a dense-matmul peak measured in the same run on the same device.
"""

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path, and benchmarks/agent.py (envs.py) would
# shadow the `agent` (`envs`) package: take it off.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from agent.benchmarking import bench_config, device_name, matmul_peak_flops, median_seconds, synthetic_batch
from uio2_core.model import UIO2Model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="tiny")
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--text-len", type=int, default=64)
    p.add_argument("--target-len", type=int, default=32)
    p.add_argument("--inputs", choices=["text", "all"], default="all")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    cfg = bench_config(args.model, args.layers, args.dtype)
    model = UIO2Model(cfg, rngs=nnx.Rngs(0), with_vqgan=False)
    optimizer = nnx.Optimizer(model, optax.adafactor(1e-3), wrt=nnx.Param)
    batch = synthetic_batch(cfg, args.batch, args.text_len, args.inputs)
    rng = np.random.default_rng(1)
    targets = jnp.asarray(rng.integers(3, 32000, size=(args.batch, args.target_len)), jnp.int32)

    def loss_fn(m: UIO2Model) -> jax.Array:
        logits = m(batch, {"text": targets})["text"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    graphdef, state = nnx.split((model, optimizer))
    del model, optimizer

    @jax.jit
    def train_step(state):
        m, opt = nnx.merge(graphdef, state)
        loss, grads = nnx.value_and_grad(loss_fn)(m)
        opt.update(m, grads)
        return loss, nnx.state((m, opt))

    compiled = train_step.lower(state).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0))
    loss0, state = compiled(state)

    def run() -> jax.Array:
        nonlocal state
        loss, state = compiled(state)
        return loss

    seconds = median_seconds(run, args.repeats)
    peak = matmul_peak_flops(dtype=jnp.dtype(args.dtype))
    print(json.dumps({
        "benchmark": "train_step", "model": cfg.name, "dtype": cfg.dtype, "device": device_name(),
        "batch": args.batch, "inputs": args.inputs, "target_len": args.target_len, "first_loss": float(loss0),
        "step_ms": 1000 * seconds, "step_gflop": flops / 1e9, "achieved_gflops": flops / seconds / 1e9,
        "matmul_peak_gflops": peak / 1e9, "fraction_of_matmul_peak": flops / seconds / peak,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
