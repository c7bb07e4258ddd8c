"""`uio2 demo`: the README's main job, through the same commands a user would type.

1. make short PointNav episode sets (train / held-out eval, 1-3 m, straight paths allowed) with
   Habitat's generator,
2. `uio2 collect` oracle trajectories: PointNav on the training episodes, and (unless
   `--pointnav-only`) the tabletop tasks of `TABLETOP_TASKS` (VIMA placement generalisation, L1) on
   training seeds plus
   oracle steps on the held-out tabletop seeds, only to measure location error (LeRobot v3 datasets),
3. `uio2 train` ONE tiny UIO2 from scratch on the mixture of both families,
4. `uio2 eval` random, oracle and the trained UIO2 per env on held-out episodes / seeds,
5. `uio2 rollout` one episode of the trained agent per family as a captioned GIF (the tabletop one
   shows the prompt's object images),
and writes OUT/summary.json: one entry per env and policy with its success rate (95% interval), SPL
for PointNav, and the trained model's pick/place location error on the held-out tabletop seeds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESOLUTION = 32  # camera pixels: the trained agent mostly needs the goal; small frames keep it fast


def _episodes(path: Path, seed: int, scenes: range, per_scene: int, goal_at_start: bool = False) -> Path:
    """`goal_at_start` (the quick run only): each goal moved onto its start, so the right action is
    "stop" at once: a task 20 training steps can learn, where random succeeds only when it stops
    before its first step forward (about half the time)."""
    import dataclasses

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
    if goal_at_start:
        episodes = [
            dataclasses.replace(e, goals=[{"position": list(e.start_position), "radius": None}],
                                info={**e.info, "geodesic_distance": 0.0})
            for e in episodes
        ]  # fmt: skip
    save_episodes(episodes, path)
    return path


TABLETOP_TASKS = ("visual_manipulation", "rotate")
# tabletop: what the trained model sees and how it is taught (docs/tabletop_learning.md): the top view,
# prompt images cropped to their object, each prompt object found in the scene by the model's own
# yes/no grounding question and named by position (policies/grounding.py), Gaussian location targets
TABLETOP_TRAIN = ["--view", "top", "--prompt-crop", "--ground-objects", "--location-sigma", "10",
                  "--smooth-locations"]  # fmt: skip
POINTNAV_WEIGHT = 2.0  # after the tabletop-only steps: PointNav half the rows, about 600 steps' worth
TABLETOP_FIRST = 1500  # tabletop alone first: the grounding question is learnt at ~1100 (run A)
GROUNDING_SHARE = 0.5  # of each tabletop dataset's draws: its grounding questions (run A)
TABLETOP_WARMUP = 100  # run A's (docs/tabletop_learning.md)
LOGIT_SHARE = 0.5  # most targets are short (PointNav's, the grounding answers): logits for half the positions


def _settings(quick: bool, tabletop: bool) -> dict[str, int]:
    if quick:  # CI: seconds, one tabletop task
        return {"pn_train": 8, "pn_eval": 4, "tt_train": 8, "tt_eval": 4, "steps": 20, "heldout": 8}
    steps = 2800 if tabletop else 600  # PointNav alone: 600 steps
    return {"pn_train": 60, "pn_eval": 30, "tt_train": 1000, "tt_eval": 30, "steps": steps, "heldout": 32}


def run_demo(
    out_dir: str | Path, uio2: Callable[[list[str]], int], seed: int = 0, quick: bool = False,
    tabletop: bool = False,
) -> dict[str, Any]:
    """`tabletop`: also the tabletop tasks of `TABLETOP_TASKS` (`uio2 demo --pointnav-only` leaves them
    out). `uio2`: the command line's entry point (`agent.cli.main`, passed in
    so that this module does not import the command line that imports it)."""

    def _cli(*argv: str) -> None:
        print("$ uio2 " + " ".join(argv), flush=True)
        if uio2(list(argv)) != 0:
            raise RuntimeError(f"uio2 {argv[0]} failed")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    n = _settings(quick, tabletop)
    tasks = () if not tabletop else TABLETOP_TASKS[:1] if quick else TABLETOP_TASKS
    steps = n["steps"]
    train_file = _episodes(out / "episodes_train.json.gz", seed, range(0, 6), max(n["pn_train"] // 6 + 1, 1),
                           quick)  # fmt: skip
    eval_file = _episodes(
        out / "episodes_eval.json.gz", seed + 1, range(1000, 1006), max(n["pn_eval"] // 6 + 1, 1), quick
    )
    env_opts = [f"--env.width={RESOLUTION}", f"--env.height={RESOLUTION}", "--env.max_episode_steps=60"]
    run = out / "run"
    pn_train_env = [*env_opts, f"--env.episodes={train_file}"]
    pn_eval_env = [*env_opts, f"--env.episodes={eval_file}"]
    datasets, heldout = [out / "dataset"], []
    _cli("collect", "--env", "pointnav", "--policy", "oracle", "--episodes", str(n["pn_train"]), "--seed",
         str(seed), "--out", str(datasets[0]), *pn_train_env)  # fmt: skip
    for task in tasks:
        datasets.append(out / f"dataset_{task}")
        _cli("collect", "--env", f"tabletop/{task}", "--policy", "oracle", "--episodes", str(n["tt_train"]),
             "--seed", str(seed), "--out", str(datasets[-1]))  # fmt: skip
        heldout.append(out / f"heldout_{task}")  # the eval seeds' oracle steps: location error only
        _cli("collect", "--env", f"tabletop/{task}", "--policy", "oracle", "--episodes", str(n["heldout"]),
             "--seed", str(EVAL_SEED), "--out", str(heldout[-1]))  # fmt: skip
    _cli("train", "--data", ",".join(map(str, datasets)), "--model", "tiny", "--steps", str(steps),
         "--batch-size", "16", "--warmup-steps",
         str(min(TABLETOP_WARMUP, max(steps // 10, 1)) if tasks else max(steps // 10, 1)),
         "--seed", str(seed),
         *(["--heldout", ",".join(map(str, heldout)), *TABLETOP_TRAIN, "--logit-share", str(LOGIT_SHARE),
            "--data-weights", ",".join([str(POINTNAV_WEIGHT)] + ["1"] * len(tasks)),
            "--tabletop-first", str(min(TABLETOP_FIRST, steps // 2)),
            "--grounding-share", str(GROUNDING_SHARE)] if tasks else []),
         "--out", str(run))  # fmt: skip
    summary: dict[str, Any] = {"train_steps": steps, "tabletop_train": TABLETOP_TRAIN if tasks else [],
                               "envs": {}}  # fmt: skip
    envs = {"pointnav": (pn_eval_env, n["pn_eval"], n["pn_train"])}
    envs.update({f"tabletop/{t}": ([], n["tt_eval"], n["tt_train"]) for t in tasks})
    for env, (eval_env, episodes, train_episodes) in envs.items():
        entry: dict[str, Any] = {"episodes": episodes, "train_episodes": train_episodes}
        for name, policy in (
            ("random", ["random"]),
            ("oracle", ["oracle"]),
            ("trained", ["uio2", "--model", str(run)]),
        ):
            where = out / f"eval_{env.replace('/', '_')}_{name}"
            eval_args = ["--episodes", str(episodes), "--seed", str(EVAL_SEED), "--num-envs", "4", "--out",
                         str(where)]  # fmt: skip
            _cli("eval", "--env", env, "--policy", *policy, *eval_args, *eval_env)
            result = json.loads((where / "results.json").read_text())["summary"]
            keys = ("success_rate", "success_ci95", "spl", "soft_spl", "mean_steps")
            entry[name] = {k: result[k] for k in keys if k in result}
        summary["envs"][env] = entry
    location, grounding = _last_heldout(run)
    for env in summary["envs"]:
        if env.startswith("tabletop/") and location.get(env):
            summary["envs"][env]["trained"]["location_error"] = location[env]
        if env in grounding:  # held-out grounding questions answered right (chance 0.5)
            summary["envs"][env]["trained"]["grounding_accuracy"] = grounding[env]
    summary["videos"] = {}
    for env, extra in (("pointnav", pn_eval_env), *((f"tabletop/{t}", []) for t in tasks[:1])):
        where = out / f"video_{env.replace('/', '_')}"
        _cli("rollout", "--env", env, "--policy", "uio2", "--model", str(run), "--seed", str(EVAL_SEED),
             "--out", str(where), *extra)  # fmt: skip
        summary["videos"][env] = json.loads((where / "rollout.json").read_text())["video"]
    summary["wall_s"] = time.perf_counter() - start
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n" + table(summary))
    print(f"summary in {out / 'summary.json'}, videos {', '.join(summary['videos'].values())} "
          f"({summary['wall_s']:.0f} s)")  # fmt: skip
    return summary


EVAL_SEED = 1000  # held-out: training collects from seed 0 up, far below


def _last_heldout(run: Path) -> tuple[dict[str, dict], dict[str, float]]:
    """The final checkpoint's location error and grounding accuracy per held-out tabletop dataset
    (RUN_DIR/eval.jsonl)."""
    path = run / "eval.jsonl"
    if not path.is_file():
        return {}, {}
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    last = lines[-1] if lines else {}

    def by_env(per: dict) -> dict:
        return {f"tabletop/{Path(k).name.removeprefix('heldout_')}": v for k, v in per.items()}

    grounding = last.get("grounding_accuracy_per_dataset", {})
    return by_env(last.get("location_per_dataset", {})), by_env(grounding)


def table(summary: dict[str, Any]) -> str:
    """The terminal table: one row per env and policy."""
    head = f"{'env':<30} {'policy':<8} {'success':>8} {'95% CI':>14} {'SPL':>6} {'pick m':>7} {'place m':>7}"
    rows = [head]
    for env, entry in summary["envs"].items():
        for name in ("random", "oracle", "trained"):
            r = entry[name]
            lo, hi = r.get("success_ci95", (float("nan"), float("nan")))
            spl = f"{r['spl']:>6.3f}" if "spl" in r else f"{'-':>6}"
            loc = r.get("location_error", {})
            pick = f"{loc['pick_m']:>7.3f}" if "pick_m" in loc else f"{'-':>7}"
            place = f"{loc['place_m']:>7.3f}" if "place_m" in loc else f"{'-':>7}"
            ci = f"[{lo:.2f}, {hi:.2f}]"
            rows.append(f"{env:<30} {name:<8} {r['success_rate']:>8.3f} {ci:>14} {spl} {pick} {place}")
    return "\n".join(rows)
