"""Crash safety: a recording process killed with SIGKILL loses at most the episode in progress.

A child process (this module, run as a script) records episodes whose frames are a pure function of
(episode, frame index), so the parent can recompute and compare everything that was committed.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FPS = 15
FEATURES = {
    "observation.images.rgb": {
        "dtype": "image",
        "shape": [8, 8, 3],
        "names": ["height", "width", "channels"],
    },
    "observation.state": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]},
    "action": {"dtype": "int64", "shape": [1], "names": ["discrete_action"]},
    "next.reward": {"dtype": "float32", "shape": [1], "names": None},
    "next.done": {"dtype": "bool", "shape": [1], "names": None},
    "next.success": {"dtype": "bool", "shape": [1], "names": None},
}


def episode_length(k: int) -> int:
    return 20 + (7 * k) % 13


def task_of(k: int) -> str:
    return f"task {k % 3}"


def make_frame(k: int, t: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([k, t])
    done = t == episode_length(k) - 1
    return {
        "observation.images.rgb": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
        "observation.state": rng.normal(size=3).astype(np.float32),
        "action": np.array([(k + t) % 4], np.int64),
        "next.reward": np.array([0.5 * t], np.float32),
        "next.done": np.array([done]),
        "next.success": np.array([done and k % 2 == 0]),
    }


# -- the child ------------------------------------------------------------------------------------------
def child_main(root: str, stop: int, frame_delay: float, die_at_replace: int) -> None:
    """Record episodes until `stop`; optionally SIGKILL itself just before the n-th os.replace."""
    from agent.recording import TrajectoryRecorder

    if die_at_replace > 0:
        real_replace, calls = os.replace, [0]

        def replace(src, dst):
            calls[0] += 1
            if calls[0] == die_at_replace:
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst)

        os.replace = replace
    rec = TrajectoryRecorder(root, FPS, FEATURES, rows_per_group=4)
    print("ready", flush=True)
    for k in range(rec.num_episodes, stop):
        rec.start_episode(task_of(k), extra={"k": k})
        for t in range(episode_length(k)):
            rec.add_frame(make_frame(k, t))
            if t == 5:
                print(f"started {k}", flush=True)
            time.sleep(frame_delay)
        rec.end_episode({"length": episode_length(k)})
        print(f"committed {k}", flush=True)
    rec.close()


def spawn(
    root: Path, stop: int = 10**6, frame_delay: float = 0.002, die_at_replace: int = 0
) -> subprocess.Popen:
    code = (
        f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); import test_dataset_kill as t; "
        f"t.child_main({str(root)!r}, {stop}, {frame_delay}, {die_at_replace})"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def read_until(proc: subprocess.Popen, line: str, timeout: float = 30.0) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = proc.stdout.readline().strip()
        if not out and proc.poll() is not None:
            raise AssertionError(f"child exited early: {seen}, stderr: {proc.stderr.read()[-2000:]}")
        seen.append(out)
        if out == line:
            return seen
    raise AssertionError(f"timed out waiting for {line!r}: {seen}")


def kill(proc: subprocess.Popen) -> list[str]:
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode in (-signal.SIGKILL, 0)
    return out.split()


# -- checks ---------------------------------------------------------------------------------------------
def check_dataset(root: Path) -> int:
    """Every committed episode equals what the child wrote; returns the number of episodes."""
    from training.dataset import open_dataset

    ds = open_dataset(root)
    total = 0
    for k in range(ds.num_episodes):
        ep = ds.episode(k)
        n = episode_length(k)
        frames = [make_frame(k, t) for t in range(n)]
        for key in FEATURES:
            np.testing.assert_array_equal(ep[key], np.stack([f[key] for f in frames]), err_msg=f"{k}/{key}")
        np.testing.assert_array_equal(ep["index"].ravel(), np.arange(total, total + n))
        assert set(ep["task"]) == {task_of(k)}
        assert ds.episode_extra(k) == {"k": k, "length": n, "success": k % 2 == 0}
        total += n
    assert ds.num_frames == total
    if total:
        assert int(ds.stats["index"]["count"][0]) == total
    assert ds.tasks == [task_of(k) for k in range(min(3, ds.num_episodes))]
    return ds.num_episodes


def committed_after_reopen(root: Path) -> int:
    """Reopen for appending (which tidies up), check the derived files agree with the episode rows."""
    import json

    from agent.recording import TrajectoryRecorder

    with TrajectoryRecorder(root, FPS, FEATURES) as rec:
        n = rec.num_episodes
    info = json.loads((root / "meta/info.json").read_text())
    assert info["total_episodes"] == n
    assert sorted(p.name for p in (root / "data/chunk-000").iterdir()) == [
        f"file-{k:03d}.parquet" for k in range(n)
    ]
    assert not list(root.rglob("*.tmp"))
    return n


# -- tests ----------------------------------------------------------------------------------------------
def test_kill_mid_episode_keeps_completed_episodes(tmp_path):
    root = tmp_path / "ds"
    proc = spawn(root)
    read_until(proc, "started 3")
    kill(proc)
    assert (root / "data/chunk-000/file-003.parquet.tmp").is_file()  # episode 3 had row groups on disk
    assert check_dataset(root) == 3
    assert committed_after_reopen(root) == 3
    proc = spawn(root, stop=5, frame_delay=0.0)  # appending after the crash continues cleanly
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert check_dataset(root) == 5


CREATION_REPLACES, EPISODE_REPLACES = (
    4,
    6,
)  # info; tasks, stats, info | data, sidecar, row, tasks, stats, info


@pytest.mark.parametrize("step", range(1, EPISODE_REPLACES + 1))
def test_kill_at_each_commit_step(tmp_path, step):
    """Die before the n-th file publication of episode 1's commit (data, sidecar, row, tasks, stats, info)."""
    root = tmp_path / "ds"
    proc = spawn(root, stop=3, frame_delay=0.0, die_at_replace=CREATION_REPLACES + EPISODE_REPLACES + step)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    expected = 2 if step > 3 else 1  # the episode row (3rd publication) is the commit point
    assert check_dataset(root) == expected
    assert committed_after_reopen(root) == expected
    assert check_dataset(root) == expected


@pytest.mark.parametrize("step", range(1, CREATION_REPLACES + 1))
def test_kill_while_creating_the_dataset(tmp_path, step):
    root = tmp_path / "ds"
    proc = spawn(root, stop=1, frame_delay=0.0, die_at_replace=step)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    proc = spawn(root, stop=2, frame_delay=0.0)  # the half-created root is taken over
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert check_dataset(root) == 2


def test_repeated_random_kills_while_appending(tmp_path):
    root = tmp_path / "ds"
    rng = np.random.default_rng(1234)
    for _ in range(5):
        proc = spawn(root)
        read_until(proc, "ready")
        time.sleep(float(rng.uniform(0.0, 0.4)))
        lines = kill(proc)
        started = [int(x) for a, x in itertools.pairwise(lines) if a == "started"]
        committed = [int(x) for a, x in itertools.pairwise(lines) if a == "committed"]
        n = check_dataset(root)
        if committed:
            assert n >= committed[-1] + 1
        if started:
            assert started[-1] <= n <= started[-1] + 1  # at most the episode in progress is lost
        assert committed_after_reopen(root) == n
    proc = spawn(root, stop=n + 2, frame_delay=0.0)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert check_dataset(root) == n + 2
