"""Tiny trained for a few steps on one device and on several 8-device meshes (run as a subprocess:
the device count must be fixed before jax starts). Prints one JSON line per mesh:
{"mesh": [d, f, m], "losses": [...], "opt_bytes_per_device": int, "sharded_params": int,
 "moments_of_sharded_params": int, "replicated_moments_of_sharded_params": int}.

    python mesh_script.py STEPS D,F,M [D,F,M ...]     (1,1,1 runs on the first device alone;
                                                       D,F,Mp: with TrainConfig.pin_rows)
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax
import numpy as np

from training.optimizer import OptimizerConfig
from training.trainer import TrainConfig, Trainer
from uio2_core.config import get_config
from uio2_core.model import build_model


def batch_at(position: int) -> dict:
    rng = np.random.default_rng(position)
    targets = np.concatenate([rng.integers(32000, 33000, (8, 4)), np.ones((8, 1)), np.zeros((8, 1))], 1)
    return {"text": rng.integers(3, 1000, (8, 8)).astype(np.int32), "targets/text": targets.astype(np.int32)}


def keys(path) -> tuple:
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def run(model, steps: int, mesh: tuple[int, int, int], pin_rows: bool = False) -> dict:
    n = int(np.prod(mesh))
    opt = OptimizerConfig(learning_rate=1e-2, warmup_steps=2)
    cfg = TrainConfig(steps=steps, mesh=mesh, optimizer=opt, pin_rows=pin_rows)
    trainer = Trainer(model, cfg, devices=jax.devices()[:n])  # copies the parameters: model is not changed
    losses = [trainer.step(batch_at(k))["loss"] for k in range(steps)]
    params = {keys(p): x for p, x in jax.tree_util.tree_flatten_with_path(trainer.state["params"])[0]}
    sharded = {k: x for k, x in params.items() if not x.sharding.is_fully_replicated}
    moments = replicated = 0
    for p, leaf in jax.tree_util.tree_flatten_with_path(trainer.state["opt_state"])[0]:
        k = keys(p)
        owner = next((sharded[k[i:]] for i in range(len(k)) if k[i:] in sharded), None)
        if owner is not None and leaf.shape == owner.shape:
            moments += 1
            replicated += leaf.sharding.is_fully_replicated
    opt_bytes = sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(trainer.state["opt_state"]))
    return {"mesh": list(mesh), "pin_rows": pin_rows, "losses": losses, "opt_bytes_per_device": opt_bytes,
            "sharded_params": len(sharded), "moments_of_sharded_params": moments,
            "replicated_moments_of_sharded_params": replicated}  # fmt: skip


if __name__ == "__main__":
    steps = int(sys.argv[1])
    model = build_model(get_config("tiny"), seed=0, with_vqgan=False)
    for spec in sys.argv[2:]:
        mesh = tuple(int(x) for x in spec.rstrip("p").split(","))
        print(json.dumps(run(model, steps, mesh, pin_rows=spec.endswith("p"))), flush=True)
