"""Recording benchmark: what writing a rollout to disk adds to each env step, for PointNav and VIMA frames.

Prints one JSON object. Per family: milliseconds per step for `frame_from` (conversion) and
`add_frame` (validation, PNG encoding, stats, row-group writes; mean and p50/p95), the commit time of
`end_episode` (with and without fsync) and that commit spread over the episode's steps, plus bytes on
disk per frame. Observations are real env frames rendered beforehand so rendering is not timed
(PointNav 256x256 along a random walk; 64 tabletop scenes, cycled, or smooth synthetic images when the
tabletop env cannot be built).
Run: .venv/bin/python benchmarks/recording.py [--steps 200 --episodes 3 --out result.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.recording import TrajectoryRecorder
from training.features import features_for, frame_from


def pointnav_source(n: int, depth_stride: int = 1) -> tuple[dict, list[tuple[dict, Any]], str]:
    from envs.pointnav.env import PointNavEnv

    env = PointNavEnv(width=256, height=256, scene_seed=0)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(n):
        action = int(rng.integers(1, 4))
        pairs.append((obs, action))
        obs, _, term, trunc, _ = env.step(action)
        if term or trunc:
            obs, _ = env.reset()
    feats = features_for(env.observation_space, env.action_space, depth_stride=depth_stride)
    env.close()
    return feats, pairs, "PointNavEnv 256x256"


def vima_source(n: int) -> tuple[dict, list[tuple[dict, Any]], str]:
    from envs.tabletop.spaces import action_space, observation_space

    feats = features_for(observation_space(), action_space())
    rng = np.random.default_rng(0)
    try:
        from envs.tabletop import make_tabletop

        env = make_tabletop("visual_manipulation")
        frames = [env.reset(seed=s)[0] for s in range(min(n, 64))]  # 64 = one row group: no repeats in it
        env.close()
        source = f"TabletopEnv visual_manipulation ({len(frames)} scenes, cycled)"
    except Exception as err:  # the tabletop env is optional here: fall back to smooth synthetic views
        yy, xx = np.mgrid[0:128, 0:256]
        base = np.stack([xx % 256, yy * 2, (xx + yy) % 256]).astype(np.uint8)
        frames = [
            {"rgb": {"front": np.roll(base, s, 2), "top": base[:, ::-1].copy()}, "ee": 0} for s in range(64)
        ]
        source = f"synthetic gradients ({type(err).__name__})"
    pairs = []
    for t in range(n):
        action = {
            "pose0_position": rng.uniform(0.25, 0.75, 2).astype(np.float32),
            "pose0_rotation": np.array([0, 0, 0, 1], np.float32),
            "pose1_position": rng.uniform(-0.5, 0.5, 2).astype(np.float32),
            "pose1_rotation": np.array([0, 0, 0, 1], np.float32),
        }
        pairs.append((frames[t % len(frames)], action))
    return feats, pairs, source


def measure(feats: dict, pairs: list, episodes: int, fsync: bool, depth_stride: int = 1) -> dict[str, Any]:
    convert, add, commit = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        with TrajectoryRecorder(root, 10, feats, fsync=fsync) as rec:
            for e in range(episodes):
                rec.start_episode("benchmark task", extra={"seed": e})
                for t, (obs, action) in enumerate(pairs):
                    t0 = time.perf_counter()
                    frame = frame_from(
                        obs, action, 0.0, t == len(pairs) - 1, False, False, depth_stride=depth_stride
                    )
                    t1 = time.perf_counter()
                    rec.add_frame(frame)
                    t2 = time.perf_counter()
                    convert.append(t1 - t0)
                    add.append(t2 - t1)
                t0 = time.perf_counter()
                rec.end_episode()
                commit.append(time.perf_counter() - t0)
        size = sum(p.stat().st_size for p in (root / "data").rglob("*.parquet"))
    steps = len(pairs)
    add_ms = np.asarray(add) * 1e3
    commit_ms = statistics.median(commit) * 1e3
    return {
        "frame_from_ms": round(float(np.mean(convert)) * 1e3, 3),
        "add_frame_ms_mean": round(float(add_ms.mean()), 3),
        "add_frame_ms_p50": round(float(np.percentile(add_ms, 50)), 3),
        "add_frame_ms_p95": round(float(np.percentile(add_ms, 95)), 3),
        "end_episode_ms": round(commit_ms, 2),
        "per_step_total_ms": round(float(np.mean(convert) * 1e3 + add_ms.mean() + commit_ms / steps), 3),
        "bytes_per_frame": int(size / (episodes * steps)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="frames per episode")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    result: dict[str, Any] = {
        "benchmark": "recording",
        "steps_per_episode": args.steps,
        "episodes": args.episodes,
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
    }
    feats, pairs, source = pointnav_source(args.steps)
    result["pointnav"] = {"source": source, **measure(feats, pairs, args.episodes, fsync=True)}
    result["pointnav"]["no_fsync"] = measure(feats, pairs, args.episodes, fsync=False)
    strided, pairs, _ = pointnav_source(args.steps, depth_stride=4)
    result["pointnav"]["depth_stride_4"] = measure(strided, pairs, args.episodes, fsync=True, depth_stride=4)
    feats, pairs, source = vima_source(args.steps)
    result["vima"] = {"source": source, **measure(feats, pairs, args.episodes, fsync=True)}
    result["vima"]["no_fsync"] = measure(feats, pairs, args.episodes, fsync=False)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
