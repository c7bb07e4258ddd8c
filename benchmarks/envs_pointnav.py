"""PointNav benchmark: oracle and random success/SPL over a fixed episode set, and env steps per second.

Prints one JSON object. Speed is measured with uniformly random non-STOP actions in one procedural
house (resets included when the step limit is reached), for one env and for an AsyncVectorEnv of 2
(steps/s counts env steps, i.e. 2 per vector step); a single env also reports steps per CPU second,
which is what one core gives when other jobs share the machine. `render_ms` times the ray-casting
renderer against the former TinyRenderer (envs.pointnav.render_tiny) on the same poses in the same run,
so their ratio holds on a busy machine.
Run: .venv/bin/python benchmarks/envs_pointnav.py [--episodes 200 --scenes 20 --out result.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from envs.pointnav.env import PointNavEnv
from envs.pointnav.episodes import generate_episodes
from envs.pointnav.navmesh import NavGrid
from envs.pointnav.oracle import Oracle
from envs.pointnav.render import SceneRenderer
from envs.pointnav.render_tiny import TinyRendererReference
from envs.pointnav.scene import procedural_scene


def evaluate(policy: str, episodes: list, seed: int) -> dict:
    """Success / SPL / soft-SPL means of `policy` ('oracle' or 'random') over `episodes`."""
    env = PointNavEnv(width=16, height=16, episodes=episodes)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(len(episodes)):
        env.reset(seed=i)
        oracle = Oracle(env)
        while True:
            action = oracle.act() if policy == "oracle" else int(rng.integers(4))
            _, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        rows.append(info)
    env.close()
    return {
        "episodes": len(rows),
        "success": float(np.mean([r["success"] for r in rows])),
        "spl": float(np.mean([r["spl"] for r in rows])),
        "soft_spl": float(np.mean([r["soft_spl"] for r in rows])),
        "mean_steps": float(np.mean([r["num_steps"] for r in rows])),
        "mean_collisions": float(np.mean([r["collisions"] for r in rows])),
    }


def _make(res: int):
    return lambda: PointNavEnv(width=res, height=res, scene_seed=0)


def steps_per_second(res: int, num_envs: int, steps: int, seed: int = 0) -> dict[str, float]:
    """Env steps per wall-clock second with random MOVE/TURN actions (vector env autoresets).

    For one env, also steps per CPU second of this process: on a shared machine that is what one
    core would give, undisturbed by the other jobs.
    """
    rng = np.random.default_rng(seed)
    if num_envs == 1:
        env = _make(res)()
        env.reset(seed=seed)
        for _ in range(10):
            env.step(int(rng.integers(1, 4)))
        t, c = time.perf_counter(), time.process_time()
        for _ in range(steps):
            _, _, term, trunc, _ = env.step(int(rng.integers(1, 4)))
            if term or trunc:
                env.reset()
        dt, dc = time.perf_counter() - t, time.process_time() - c
        env.close()
        return {"wall": round(steps / dt, 1), "cpu": round(steps / dc, 1)}
    venv = gym.vector.AsyncVectorEnv([_make(res) for _ in range(num_envs)])
    venv.reset(seed=seed)
    for _ in range(10):
        venv.step(rng.integers(1, 4, size=num_envs))
    n = max(1, steps // num_envs)
    t = time.perf_counter()
    for _ in range(n):
        venv.step(rng.integers(1, 4, size=num_envs))
    dt = time.perf_counter() - t
    venv.close()
    return {"wall": round(n * num_envs / dt, 1)}


def render_ms(res: int, poses: int = 100, seed: int = 0) -> dict[str, float]:
    """Milliseconds per RGB-D frame: ray caster vs TinyRenderer, interleaved on the same random poses."""
    scene = procedural_scene(seed)
    nav = NavGrid(scene)
    rng = np.random.default_rng(seed)
    views = [(nav.sample_navigable(rng), float(rng.uniform(-np.pi, np.pi))) for _ in range(poses)]
    renderers = {
        "raycast": SceneRenderer(scene, res, res),
        "tinyrenderer": TinyRendererReference(scene, res, res),
    }
    spent = dict.fromkeys(renderers, 0.0)
    for p, yaw in views:
        for name, r in renderers.items():
            t = time.perf_counter()
            r.render(p, yaw)
            spent[name] += time.perf_counter() - t
    out = {name: round(s / poses * 1e3, 3) for name, s in spent.items()}
    out["speedup"] = round(spent["tinyrenderer"] / spent["raycast"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--speed-steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=str, default=None, help="also write the JSON here")
    args = ap.parse_args()
    per_scene = max(1, args.episodes // args.scenes)
    episodes = generate_episodes(range(args.scenes), per_scene, seed=args.seed)[: args.episodes]
    t0 = time.perf_counter()
    result: dict = {
        "benchmark": "envs_pointnav",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "episode_set": {"episodes": len(episodes), "scenes": args.scenes, "seed": args.seed},
        "oracle": evaluate("oracle", episodes, args.seed),
        "random": evaluate("random", episodes, args.seed),
        "steps_per_s": {},
        "render_ms": {f"{res}x{res}": render_ms(res) for res in (128, 256)},
    }
    for res in (128, 256):
        for num_envs in (1, 2):
            key = f"{res}x{res}_{'single' if num_envs == 1 else 'async2'}"
            result["steps_per_s"][key] = steps_per_second(res, num_envs, args.speed_steps, args.seed)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
