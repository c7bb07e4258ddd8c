"""Crash safety: a recording process killed with SIGKILL loses at most the episode in progress, and
what LeRobot would load from the killed dataset is exactly the committed episodes.

A child process (tests/helpers/kill_recorder.py; it imports the recorder, not jax or pytest) records
episodes whose frames are a pure function of (episode, frame index), so the parent can recompute
everything that was committed. The child stops at a named point of the recorder
(`agent.recording.checkpoint_hook`) and says so; the parent then kills it with SIGKILL, so each kill
lands exactly where it is meant to.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.kill_recorder import FEATURES, FPS, child_main, episode_length, make_frame, task_of

REPO = Path(__file__).resolve().parents[1]
CHILD = REPO / "tests" / "helpers" / "kill_recorder.py"


# -- the child ------------------------------------------------------------------------------------------
def spawn(
    root: Path,
    stop: int = 10**6,
    frame_delay: float = 0.002,
    pause_at: str = "",
    pause_episode: int = -1,
    fsync: bool = True,
) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    args = [str(root), str(stop), str(frame_delay), pause_at, str(pause_episode), str(int(fsync))]
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
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


def kill_at(root: Path, point: str, episode: int, stop: int = 10**6) -> None:
    """Run a child until it reaches the checkpoint, then SIGKILL it there."""
    proc = spawn(root, stop=stop, frame_delay=0.0, pause_at=point, pause_episode=episode, fsync=False)
    read_until(proc, f"paused {point}")
    kill(proc)
    assert proc.returncode == -signal.SIGKILL


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


def lerobot_view(root: Path, cache: Path) -> dict:
    """Load the dataset as LeRobot 0.4.4 does, with HF `datasets` and pandas and without torch.

    `load_nested_dataset`: `Dataset.from_parquet` over `sorted(glob("*/*.parquet"))` of `data/` (with the
    features of info.json) and of `meta/episodes/`; `meta/tasks.parquet` through pandas. Returns the
    episodes found in `data/` and what LeRobot's totals say, after checking every invariant that LeRobot's
    indexing relies on.
    """
    datasets = pytest.importorskip("datasets", reason="HF datasets (the test extra) is not installed")
    pd = pytest.importorskip("pandas", reason="pandas (a dependency of HF datasets) is not installed")
    info = json.loads((root / "meta/info.json").read_text())
    hf = {}
    for key, ft in info["features"].items():  # lerobot's get_hf_features_from_features
        if ft["dtype"] == "image":
            hf[key] = datasets.Image()
        elif ft["shape"] == [1]:
            hf[key] = datasets.Value(ft["dtype"])
        else:
            hf[key] = datasets.Sequence(length=ft["shape"][0], feature=datasets.Value(ft["dtype"]))
    data_files = [str(p) for p in sorted((root / "data").glob("*/*.parquet"))]
    meta_files = [str(p) for p in sorted((root / "meta/episodes").glob("*/*.parquet"))]
    if not data_files:  # LeRobot raises FileNotFoundError; nothing of an episode may be there either
        assert info["total_episodes"] == 0 and not meta_files, meta_files
        return {"episodes": 0, "frames": 0, "info_episodes": 0, "rows": 0}
    cache.mkdir(parents=True, exist_ok=True)
    n = len(list(cache.iterdir()))
    episodes = datasets.Dataset.from_parquet(meta_files, cache_dir=str(cache / f"{n}m"))
    rows = {r["episode_index"]: r for r in episodes.select_columns(
        [c for c in episodes.column_names if not c.startswith("stats/")]).to_list()}  # fmt: skip
    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    data = datasets.Dataset.from_parquet(
        data_files, features=datasets.Features(hf), cache_dir=str(cache / f"{n}d")
    )
    cols = data.select_columns(["episode_index", "index", "frame_index", "task_index", "action"]).to_dict()
    in_data = sorted(set(cols["episode_index"]))
    assert in_data == list(range(len(in_data))), f"episodes in data/: {in_data}"
    total = 0
    for k in in_data:  # every episode in data/ has its row, and its index range is whole and in order
        assert k in rows, f"episode {k} is in data/ without its row in meta/episodes/"
        row = rows[k]
        at = [i for i, e in enumerate(cols["episode_index"]) if e == k]
        assert row["length"] == len(at) == episode_length(k)
        assert (row["dataset_from_index"], row["dataset_to_index"]) == (total, total + len(at))
        assert [cols["index"][i] for i in at] == list(range(total, total + len(at)))
        assert [cols["frame_index"][i] for i in at] == list(range(len(at)))
        assert [cols["action"][i] for i in at] == [(k + t) % 4 for t in range(len(at))]
        assert {tasks.index[cols["task_index"][i]] for i in at} == {task_of(k)}  # meta.tasks.iloc[task_index]
        total += len(at)
    assert len(data) == total
    # LeRobot fetches from the Hub unless data/ holds every episode that info.json counts, and its len()
    # is info.json's total_frames
    e = info["total_episodes"]
    assert e <= len(in_data) and info["total_frames"] == sum(episode_length(k) for k in range(e))
    return {"episodes": len(in_data), "frames": total, "info_episodes": e, "rows": len(rows)}


def committed_after_reopen(root: Path) -> int:
    """Reopen for appending (which tidies up), check the derived files agree with the episode rows."""
    from agent.recording import TrajectoryRecorder

    with TrajectoryRecorder(root, FPS, FEATURES) as rec:
        n = rec.num_episodes
    info = json.loads((root / "meta/info.json").read_text())
    assert info["total_episodes"] == n
    names = [f"file-{k:03d}.parquet" for k in range(n)]
    for sub in ("data", "meta/episodes", "meta/episodes_extra"):
        assert sorted(p.name for p in (root / sub).glob("*/*")) == names, sub
    assert not (root / ".staging").exists() and not list(root.rglob("*.tmp"))
    return n


def frames_of(n: int) -> int:
    return sum(episode_length(k) for k in range(n))


# -- tests ----------------------------------------------------------------------------------------------
# (checkpoint of episode 2, episodes in data/ after the kill, of which info.json counts, after reopening)
KILL_POINTS = {
    "episode-started": (2, 2, 2),  # before its first frame is written
    "row-group-written": (2, 2, 2),  # mid-episode: row groups in .staging/
    "episode-staged": (2, 2, 2),  # its data file complete in .staging/, no metadata yet
    "row-published": (2, 2, 2),  # its row published, not its data: removed on reopening
    "data-published": (3, 2, 3),  # committed; info.json not yet rewritten
    "episode-committed": (3, 3, 3),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_lerobot_reads_exactly_the_committed_episodes_after_a_kill(tmp_path, point):
    root = tmp_path / "ds"
    in_data, counted, after = KILL_POINTS[point]
    kill_at(root, point, 2)
    seen = lerobot_view(root, tmp_path / "hf")
    assert (seen["episodes"], seen["frames"], seen["info_episodes"]) == (in_data, frames_of(in_data), counted)
    assert seen["rows"] == in_data + (point == "row-published")  # a row without data is not LeRobot's to read
    if point in ("episode-started", "row-group-written", "episode-staged", "row-published"):
        staged = root / ".staging" / "data%chunk-000%file-002.parquet"  # the episode in progress
        assert staged.is_file() == (point != "episode-started")
    assert check_dataset(root) == in_data
    assert committed_after_reopen(root) == after
    assert lerobot_view(root, tmp_path / "hf") == {
        "episodes": after, "frames": frames_of(after), "info_episodes": after, "rows": after}  # fmt: skip
    child_main(str(root), after + 1, 0.0, fsync=False)  # appending after the crash continues cleanly
    assert check_dataset(root) == after + 1


@pytest.mark.parametrize("point", ["info-staged", "episode-started"])
def test_kill_while_creating_the_dataset(tmp_path, point):
    """Killed before info.json exists, or right after (no episode yet): the root is taken over."""
    root = tmp_path / "ds"
    kill_at(root, point, -1 if point == "info-staged" else 0)
    assert (root / "meta/info.json").is_file() == (point != "info-staged")
    child_main(str(root), 2, 0.0, fsync=False)
    assert check_dataset(root) == 2
    assert lerobot_view(root, tmp_path / "hf")["info_episodes"] == 2


def test_repeated_random_kills_while_appending(tmp_path):
    root = tmp_path / "ds"
    rng = np.random.default_rng(1234)
    for _ in range(4):
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
        assert lerobot_view(root, tmp_path / "hf")["episodes"] == n
        assert committed_after_reopen(root) == n
    child_main(str(root), n + 2, 0.0)
    assert check_dataset(root) == n + 2
