"""Trainer: loss goes down, kill -9 and resume gives the same losses (meshes: test_trainer_meshes.py)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent / "helpers" / "train_script.py"


def _env() -> dict:
    cache = os.environ.get("UIO2_JAX_CACHE_DIR", os.path.expanduser("~/.cache/uio2-embodied/jax"))
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root, "JAX_COMPILATION_CACHE_DIR": cache,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5"}  # fmt: skip


def _run(*args: str) -> list[dict]:
    cmd = [sys.executable, str(SCRIPT), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env(), check=True)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def reference_losses() -> list[float]:
    return [r["loss"] for r in _run("-", "6")]


def test_loss_decreases_on_a_fixed_batch(tiny_cfg):
    from training.optimizer import OptimizerConfig
    from training.trainer import TrainConfig, Trainer
    from uio2_core.model import build_model

    rng = np.random.default_rng(0)
    batch = {"text": rng.integers(3, 1000, (2, 8)).astype(np.int32),
             "targets/text": np.array([[32005, 32100, 1, 0], [32900, 1, 0, 0]], np.int32)}  # fmt: skip
    cfg = TrainConfig(steps=12, optimizer=OptimizerConfig(learning_rate=3e-2, warmup_steps=2))
    history = Trainer(build_model(tiny_cfg, with_vqgan=False), cfg).fit(lambda _: batch, progress=False)
    assert history[-1]["loss"] < 0.3 * history[0]["loss"]
    assert history[-1]["text_accuracy"] == 1.0


def test_kill_9_and_resume_reproduce_the_losses(tmp_path, reference_losses):
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(tmp_path), "6", "--sleep", "0.5"],
                            stdout=subprocess.PIPE, text=True, env=_env())  # fmt: skip
    seen = []
    deadline = time.time() + 300
    while len(seen) < 3 and time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith('{"step"'):
            seen.append(json.loads(line))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(seen) == 3
    rest = _run(str(tmp_path), "6")
    assert rest[0]["resumed_at"] >= 3
    losses = {r["step"]: r["loss"] for r in seen + rest[1:]}
    assert [losses[s] for s in range(1, 7)] == reference_losses  # bit-identical on CPU
