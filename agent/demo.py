"""`uio2 demo`: the README's main job, through the same commands a user would type.

1. make short PointNav episode sets (train / held-out eval, 1-3 m, straight paths allowed) with
   Habitat's generator,
2. `uio2 collect` oracle trajectories on the training episodes (LeRobot v3 dataset),
3. `uio2 train` a tiny UIO2 on them from scratch,
4. `uio2 eval` random, oracle and the trained UIO2 on the held-out episodes,
5. `uio2 rollout` one episode of the trained agent as a captioned GIF,
and writes OUT/summary.json: one entry per policy with its success rate and SPL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESOLUTION = 32  # camera pixels: the trained agent mostly needs the goal; small frames keep it fast


def _episodes(path: Path, seed: int, scenes: range, per_scene: int) -> Path:
    from envs.pointnav.episodes import generate_episode, save_episodes
    from envs.pointnav.navmesh import NavGrid
    from envs.pointnav.scene import procedural_scene

    rng = np.random.default_rng(seed)
    episodes = []
    for s in scenes:
        nav = NavGrid(procedural_scene(s))
        # short, mostly straight episodes (Habitat's generator with near=1, far=3 m and no rejection of
        # straight paths): within reach of a tiny model trained for a few minutes on a CPU
        episodes += [
            generate_episode(nav, rng, len(episodes), near=1.0, far=3.0, ratio_threshold=1.0)
            for _ in range(per_scene)
        ]
    save_episodes(episodes, path)
    return path


def run_demo(
    out_dir: str | Path, uio2: Callable[[list[str]], int], seed: int = 0, quick: bool = False
) -> dict[str, Any]:
    """`uio2`: the command line's entry point (`agent.cli.main`, passed in so that this module does
    not import the command line that imports it)."""

    def _cli(*argv: str) -> None:
        print("$ uio2 " + " ".join(argv), flush=True)
        if uio2(list(argv)) != 0:
            raise RuntimeError(f"uio2 {argv[0]} failed")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    train_eps = 8 if quick else 60
    eval_eps = 4 if quick else 30
    steps = 20 if quick else 600
    train_file = _episodes(out / "episodes_train.json.gz", seed, range(0, 6), max(train_eps // 6 + 1, 1))
    eval_file = _episodes(
        out / "episodes_eval.json.gz", seed + 1, range(1000, 1006), max(eval_eps // 6 + 1, 1)
    )
    env_opts = [f"--env.width={RESOLUTION}", f"--env.height={RESOLUTION}", "--env.max_episode_steps=60"]
    dataset, run = out / "dataset", out / "run"
    train_env = [*env_opts, f"--env.episodes={train_file}"]
    eval_env = [*env_opts, f"--env.episodes={eval_file}"]
    collect_args = ["--episodes", str(train_eps), "--seed", str(seed), "--out", str(dataset)]
    _cli("collect", "--env", "pointnav", "--policy", "oracle", *collect_args, *train_env)
    _cli("train", "--data", str(dataset), "--model", "tiny", "--steps", str(steps), "--batch-size", "16",
         "--warmup-steps", str(max(steps // 10, 1)), "--seed", str(seed), "--out", str(run))  # fmt: skip
    summary: dict[str, Any] = {"env": "pointnav", "episodes": eval_eps, "train_episodes": train_eps,
                               "train_steps": steps}  # fmt: skip
    for name, policy in (
        ("random", ["random"]),
        ("oracle", ["oracle"]),
        ("trained", ["uio2", "--model", str(run)]),
    ):
        eval_args = [
            "--episodes",
            str(eval_eps),
            "--seed",
            "1000",
            "--num-envs",
            "4",
            "--out",
            str(out / f"eval_{name}"),
        ]
        _cli("eval", "--env", "pointnav", "--policy", *policy, *eval_args, *eval_env)
        result = json.loads((out / f"eval_{name}" / "results.json").read_text())["summary"]
        summary[name] = {
            k: result[k] for k in ("success_rate", "success_ci95", "spl", "soft_spl", "mean_steps")
        }
    _cli("rollout", "--env", "pointnav", "--policy", "uio2", "--model", str(run), "--seed", "1000",
         "--out", str(out / "video"), *eval_env)  # fmt: skip
    summary["video"] = json.loads((out / "video" / "rollout.json").read_text())["video"]
    summary["wall_s"] = time.perf_counter() - start
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{'policy':<10} {'success':>8} {'SPL':>6}")
    for name in ("random", "oracle", "trained"):
        print(f"{name:<10} {summary[name]['success_rate']:>8.3f} {summary[name]['spl']:>6.3f}")
    print(f"summary in {out / 'summary.json'}, video {summary['video']} ({summary['wall_s']:.0f} s)")
    return summary
