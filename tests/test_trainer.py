"""Trainer: kill -9 and resume gives the same losses (meshes: test_trainer_meshes.py; loss goes down:
test_trainer_prefetch.py)."""

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "helpers" / "train_script.py"


def _env() -> dict:
    cache = os.environ.get("UIO2_JAX_CACHE_DIR", os.path.expanduser("~/.cache/uio2-embodied/jax"))
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root, "JAX_COMPILATION_CACHE_DIR": cache,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5"}  # fmt: skip


def _run(*args: str, stderr: list | None = None) -> list[dict]:
    cmd = [sys.executable, str(SCRIPT), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env(), check=True)
    if stderr is not None:
        stderr.append(proc.stderr)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def reference_losses() -> list[float]:
    return [r["loss"] for r in _run("-", "6")]


def test_kill_9_and_resume_reproduce_the_losses(tmp_path, reference_losses):
    """Killed after step 3 or later; the newest checkpoint is then damaged too: resume falls back to
    the one before (a warning names the damaged one) and the losses stay bit-identical."""
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
    bad = _damage_newest(tmp_path)
    stderr: list[str] = []
    rest = _run(str(tmp_path), "6", stderr=stderr)
    assert rest[0]["resumed_at"] == int(bad.name) - 1 >= 2
    assert f"checkpoint {bad} is damaged" in stderr[0]
    losses = {r["step"]: r["loss"] for r in seen + rest[1:]}
    assert [losses[s] for s in range(1, 7)] == reference_losses  # bit-identical on CPU


def _damage_newest(run: Path) -> Path:
    """Truncate the largest data file of the newest checkpoint (what a full disk or a cut copy does)."""
    newest = max((p for p in (run / "checkpoints").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    biggest = max((f for f in newest.rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
    return newest


def test_resume_truncates_the_metrics_to_the_resumed_step(tmp_path):
    """A run killed after step 5 but resumed from checkpoint 3 writes steps 4.. again: the file must
    not hold them twice (a line cut by the kill is dropped too)."""
    from training.trainer import Trainer

    lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in range(1, 6)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 6, "lo')
    (tmp_path / "eval.jsonl").write_text(json.dumps({"step": 2, "success_rate": 0.5}) + "\n"
                                         + json.dumps({"step": 4, "success_rate": 0.5}) + "\n")  # fmt: skip
    Trainer._truncate_metrics(types.SimpleNamespace(out_dir=tmp_path, step_count=3))
    kept = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert kept == [1, 2, 3]
    assert [json.loads(line)["step"] for line in (tmp_path / "eval.jsonl").read_text().splitlines()] == [2]
