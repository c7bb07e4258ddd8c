"""Tabletop suite figures: oracle and random success per task (kinematic and arm modes), median reset/step
times, and AsyncVectorEnv throughput. Prints JSON.

When the real VIMA-Bench is installed (docs/vima_bench.md), its oracle runs through the adapter on the same
tasks and seeds in the same run, and the speed-ups are the ratios of those measured medians; otherwise our
figures are reported alone (``"vima": {"available": false, ...}``).

    python benchmarks/envs_tabletop.py --episodes 100 --modes kinematic,arm --out results.json
    python benchmarks/envs_tabletop.py --level L3 --episodes 100 --modes kinematic --vector-steps 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from envs.tabletop import TASK_NAMES, env_id, make_tabletop, register_envs
from envs.vima_bench import MISSING_REASON, VIMA_TASKS, VimaBenchEnv, vima_available


def _progress(iterable, desc: str):
    try:
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, file=sys.stderr, leave=False)
    except ImportError:
        return iterable


def run_episodes(task: str, mode: str, policy: str, seeds: range, level: str | None = None) -> dict:
    """Roll out ``policy`` ("oracle" | "random") on one env of ours (``level``'s pools if given)."""
    return roll(make_tabletop(task, mode=mode, level=level), f"{task}/{mode}/{policy}", policy, seeds)


def run_vima(task: str, seeds: range, level: str | None = None) -> dict:
    """The real VIMA-Bench's oracle on ``task`` through the adapter (the benchmark's L1..L4 kwargs)."""
    return roll(VimaBenchEnv(task, partition=level), f"vima/{task}", "oracle", seeds)


def roll(env, desc: str, policy: str, seeds: range) -> dict:
    """Episodes of ``policy`` on ``env`` (closed after): success rate and reset / step timings."""
    resets, steps, successes, lengths, gave_up = [], [], 0, [], 0
    try:
        for seed in _progress(seeds, desc):
            t0 = time.perf_counter()
            obs, info = env.reset(seed=seed)
            resets.append(time.perf_counter() - t0)
            env.action_space.seed(seed)
            oracle = env.make_oracle(seed=seed) if policy == "oracle" else None
            while True:
                action = oracle.act(obs, info) if oracle is not None else env.action_space.sample()
                if action is None:  # the oracle has nothing to do: count as a failure, like VIMA's scripts
                    gave_up += 1
                    break
                t0 = time.perf_counter()
                obs, _, terminated, truncated, info = env.step(action)
                steps.append(time.perf_counter() - t0)
                if terminated or truncated:
                    successes += bool(info["success"])
                    break
            lengths.append(env.elapsed)
    finally:
        env.close()
    return {
        "success_rate": successes / len(seeds),
        "episodes": len(seeds),
        "mean_steps": float(np.mean(lengths)),
        "oracle_gave_up": gave_up,
        "reset_median_s": float(np.median(resets)),
        "step_median_s": float(np.median(steps)) if steps else None,
    }


def _medians(per_task: dict, key: str = "oracle") -> tuple[float, float]:
    resets = [e[key]["reset_median_s"] for e in per_task.values()]
    steps = [e[key]["step_median_s"] for e in per_task.values() if e[key]["step_median_s"]]
    return float(np.median(resets)), float(np.median(steps))


def vector_throughput(task: str, n_steps: int, workers: int = 2) -> dict:
    """Random-action steps/s of an AsyncVectorEnv (auto-reset included), kinematic mode."""
    import gymnasium as gym

    register_envs()
    venv = gym.vector.AsyncVectorEnv([lambda: gym.make(env_id(task))] * workers)
    try:
        venv.reset(seed=list(range(workers)))
        venv.action_space.seed(0)
        t0 = time.perf_counter()
        for _ in range(n_steps):
            venv.step(venv.action_space.sample())
        dt = time.perf_counter() - t0
    finally:
        venv.close()
    return {
        "task": task,
        "workers": workers,
        "env_steps": n_steps * workers,
        "steps_per_s": n_steps * workers / dt,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--random-episodes", type=int, default=None, help="default: same as --episodes")
    ap.add_argument("--modes", default="kinematic,arm")
    ap.add_argument("--tasks", default=None, help="default: all tasks, or the level's tasks with --level")
    ap.add_argument("--level", default=None, help="train, L1..L4: that level's pools (and task list)")
    ap.add_argument("--vector-steps", type=int, default=50)
    ap.add_argument("--vima-episodes", type=int, default=10, help="VIMA-Bench episodes/task if installed")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    if args.tasks is None:
        from envs.tabletop.levels import implemented_level_tasks

        args.tasks = ",".join(implemented_level_tasks(args.level) if args.level else TASK_NAMES)
    tasks = [t for t in args.tasks.split(",") if t]
    modes = [m for m in args.modes.split(",") if m]
    n_random = args.episodes if args.random_episodes is None else args.random_episodes
    result: dict = {"level": args.level, "episodes": args.episodes, "random_episodes": n_random, "modes": {}}
    vima: dict = {"available": vima_available() and args.vima_episodes > 0}
    if vima["available"]:
        seeds = range(args.vima_episodes)
        vima["tasks"] = {t: {"oracle": run_vima(t, seeds, args.level)} for t in tasks if t in VIMA_TASKS}
        vima["reset_median_s"], vima["step_median_s"] = _medians(vima["tasks"])
        vima["episodes"] = args.vima_episodes
    else:
        vima["reason"] = MISSING_REASON if args.vima_episodes > 0 else "--vima-episodes 0"
    for mode in modes:
        per_task = {}
        for task in tasks:
            entry = {"oracle": run_episodes(task, mode, "oracle", range(args.episodes), args.level)}
            if mode == "kinematic" and n_random > 0:
                seeds = range(10_000, 10_000 + n_random)
                entry["random"] = run_episodes(task, mode, "random", seeds, args.level)
            per_task[task] = entry
        reset_s, step_s = _medians(per_task)
        result["modes"][mode] = {
            "tasks": per_task,
            "oracle_success_min": min(e["oracle"]["success_rate"] for e in per_task.values()),
            "oracle_success_mean": float(np.mean([e["oracle"]["success_rate"] for e in per_task.values()])),
            "random_success_mean": float(np.mean([e["random"]["success_rate"] for e in per_task.values()]))
            if mode == "kinematic" and n_random > 0
            else None,
            "reset_median_s": reset_s,
            "step_median_s": step_s,
        }
        if vima["available"]:  # ratios of medians measured in this run, over the same tasks
            result["modes"][mode]["speedup_vs_vima_reset"] = vima["reset_median_s"] / reset_s
            result["modes"][mode]["speedup_vs_vima_step"] = vima["step_median_s"] / step_s
    result["vima"] = vima
    if args.vector_steps > 0:
        result["async_vector_env"] = vector_throughput("visual_manipulation", args.vector_steps)
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
