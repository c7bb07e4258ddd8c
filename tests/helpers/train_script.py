"""A tiny training run used by the trainer tests (run as a subprocess: device count, kill -9).

    python train_script.py OUT_DIR STEPS [--devices N] [--sleep S]
Prints one JSON line per step: {"step": k, "loss": ...}.
"""

import json
import os
import sys
import time

args = sys.argv[1:]
out, steps = args[0], int(args[1])
devices = int(args[args.index("--devices") + 1]) if "--devices" in args else 1
pause = float(args[args.index("--sleep") + 1]) if "--sleep" in args else 0.0
os.environ["XLA_FLAGS"] = (
    f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"
)
os.environ["JAX_PLATFORMS"] = "cpu"

from train_batches import batch_at  # noqa: E402

from training.optimizer import OptimizerConfig  # noqa: E402
from training.trainer import TrainConfig, Trainer  # noqa: E402
from uio2_core.config import get_config  # noqa: E402
from uio2_core.model import build_model  # noqa: E402

cfg = TrainConfig(steps=steps, checkpoint_every=1, mesh=(-1, 1, 1) if devices == 1 else (2, 2, 1),
                  optimizer=OptimizerConfig(learning_rate=1e-2, warmup_steps=3))  # fmt: skip
trainer = Trainer(build_model(get_config("tiny"), seed=0, with_vqgan=False), cfg, None if out == "-" else out)
if trainer.restore_latest():
    print(json.dumps({"resumed_at": trainer.step_count}), flush=True)
while trainer.step_count < steps:
    m = trainer.step(batch_at(trainer.step_count))
    trainer.save()
    print(json.dumps({"step": trainer.step_count, "loss": m["loss"]}), flush=True)
    time.sleep(pause)
