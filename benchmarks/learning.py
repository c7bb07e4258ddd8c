"""How far a UIO2 trained on L1 of our tabletop suite gets within a wall-clock budget (issue 22; not CI).

    python benchmarks/learning.py --out DIR                       # 60 min of training, tiny, 100 eps/task
    python benchmarks/learning.py --out DIR --budget-min 40 --model small --episodes-per-task 200 \
        --batch-size 16 --eval-episodes 5 --view top --prompt-crop --location-sigma 10 --smooth-locations
    python benchmarks/learning.py --out DIR --quick       # seconds: 2 tasks, 4 steps (the test runs it)

1. oracle trajectories of every L1 task family (`uio2 collect`, training seeds from --seed up; reused
   from --data-dir when already there), plus a few oracle episodes on the held-out seeds (location error),
2. ONE model trained on all of them (`training.run.train`, as `uio2 train`; any other `uio2 train` flag,
   e.g. --view top --location-sigma 10, passes through) until the training budget is spent: training
   time counts data building, compiling and steps, never the evaluations,
3. at several points (--eval-points, evenly over the budget) the model in training is evaluated by
   rollouts on held-out seeds of L1, L2 and L3 (per task and per level, 95% Wilson intervals) and by its
   pick/place location error on the held-out L1 oracle steps; random is evaluated once on the same seeds,
and writes OUT/learning.json plus a learning curve OUT/learning_curve.png (matplotlib: the `bench` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.demo import EVAL_SEED, TABLETOP_TRAIN

LEVELS = ("L1", "L2", "L3")
# published reference (VIMA paper, Jiang et al. 2023, table of results): VIMA-200M on L1 (placement
# generalisation), trained on 650K oracle trajectories on GPUs
VIMA_200M_L1 = {"success_rate": 0.815, "trajectories": 650_000, "source": "VIMA paper (Jiang et al. 2023)"}
# flags of `uio2 train` that this benchmark sets itself
OWN_TRAIN_FLAGS = (
    "--data",
    "--steps",
    "--out",
    "--model",
    "--batch-size",
    "--seed",
    "--eval-env",
    "--eval-every",
    "--eval-episodes",
    "--heldout",
)
QUICK = {
    "budget_min": 10.0,
    "max_steps": 4,
    "eval_every_steps": 2,
    "episodes_per_task": 2,
    "eval_episodes": 1,
    "heldout_episodes": 1,
    "tasks": "visual_manipulation,rotate",
    "batch_size": 4,
    "num_envs": 1,
    "checkpoint_every": 2,
}


class BenchmarkError(Exception):
    """A user's mistake in the flags: printed as one line."""


class _BudgetSpent(Exception):
    """Raised from the checkpoint hook to end training (training.run.train has no time limit)."""


def _cli(*argv: str) -> None:
    from agent.cli import main as uio2

    print("$ uio2 " + " ".join(argv), flush=True)
    if uio2(list(argv)) != 0:
        raise RuntimeError(f"uio2 {argv[0]} failed")


def _episodes_in(dataset: Path, key: str = "total_episodes") -> int:
    """Episodes (or with key "total_frames", steps) recorded in a dataset; 0 when there is none."""
    info = dataset / "meta" / "info.json"
    return json.loads(info.read_text())[key] if info.is_file() else 0


def collect(task: str, episodes: int, seed: int, data_dir: Path, split: str) -> Path:
    """Oracle episodes of one L1 task (`uio2 collect`), reused when a complete copy is in `data_dir`."""
    out = data_dir / f"{split}_L1_{task}_s{seed}_n{episodes}"
    if _episodes_in(out) == episodes:
        print(f"reusing {out}", flush=True)
        return out
    if out.exists():
        shutil.rmtree(out)  # a collection cut short: start again (collect appends)
    _cli(
        "collect",
        "--env",
        f"tabletop/{task}",
        "--level",
        "L1",
        "--policy",
        "oracle",
        "--episodes",
        str(episodes),
        "--seed",
        str(seed),
        "--out",
        str(out),
    )
    return out


def train_options(passthrough: list[str]) -> argparse.Namespace:
    """The other `uio2 train` flags, parsed by `uio2 train`'s own parser (so both take the same ones)."""
    from agent.cli import _UsageError, build_parser

    for flag in passthrough:
        if flag.split("=", 1)[0] in OWN_TRAIN_FLAGS:
            raise BenchmarkError(f"{flag.split('=', 1)[0]} is set by the benchmark itself (see --help)")
    parser = build_parser().subcommands["train"]
    try:
        return parser.parse_args(["--data", "-", "--steps", "1", "--out", "-", *passthrough])
    except _UsageError as err:
        raise BenchmarkError(f"a flag passed on to uio2 train: {err}") from err


def train_kwargs(topt: argparse.Namespace) -> dict[str, Any]:
    """`training.run.train`'s keyword arguments from the parsed `uio2 train` flags: every flag named as
    one of its parameters (so a new `uio2 train` option passes through), the few that the command
    line converts converted the same way."""
    import inspect

    from agent.cli import _pack
    from training.denoising_sources import parse_denoise
    from training.run import train

    convert = {"mesh": lambda v: tuple(int(x) for x in v.split(",")), "denoise": parse_denoise, "pack": _pack}
    own = {
        "data",
        "steps",
        "out",
        "model",
        "batch_size",
        "seed",
        "evaluate",
        "checkpoint_every",
        "heldout",
        "progress",
    }
    params = inspect.signature(train).parameters
    return {k: convert.get(k, lambda v: v)(v) for k, v in vars(topt).items() if k in params and k not in own}


def _rate(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in ("episodes", "success_rate", "success_ci95")}


def rollouts(policy: Any, levels: list[str], tasks: list[str], episodes: int, num_envs: int) -> dict:
    """Success per level (all its episodes pooled: tasks have equal episodes, so the pooled rate is the
    mean of the task rates) and per task, on the held-out seeds from EVAL_SEED up."""
    from agent.envs import resolve_env
    from agent.metrics import summarize
    from agent.rollout import evaluate

    out: dict[str, Any] = {}
    for level in levels:
        entries = [e for e in resolve_env(f"tabletop/{level}") if e.task in tasks]
        results = evaluate(
            entries,
            policy,
            episodes,
            EVAL_SEED,
            env_id=f"tabletop/{level}",
            num_envs=num_envs,
            show_progress=False,
        )
        per_task = {}
        for entry in entries:
            per_task[entry.task] = _rate(summarize([r for r in results if r["task"] == entry.task]))
        out[level] = {**_rate(summarize(results)), "tasks": len(entries), "per_task": per_task}
    return out


def padded(batches: list[dict], rows: int = 16) -> list[dict]:
    """Every held-out batch filled up to `rows` rows (the last one of a dataset is short), so that the
    location metric compiles one shape, not one per dataset size. A filler row repeats the first row's
    inputs with empty targets: it holds no VIMA action, and `location_error` counts none for it."""
    out = []
    for batch in batches:
        n = len(batch["targets/text"])
        if n < rows:
            fill = {k: np.repeat(v[:1], rows - n, axis=0) for k, v in batch.items()}
            fill.update({k: np.zeros_like(v) for k, v in fill.items() if k.startswith("targets/")})
            batch = {k: np.concatenate([v, fill[k]]) for k, v in batch.items()}
        out.append(batch)
    return out


def _location(model: Any, held: dict[str, list[dict]]) -> dict[str, Any]:
    """Pick/place error per task on its held-out oracle steps, and over all of them."""
    from training.location_metrics import location_error

    per_task = {task: location_error(model, batches) for task, batches in held.items()}
    all_batches = [b for batches in held.values() for b in batches]
    return {"all": location_error(model, all_batches), "per_task": per_task}


class Schedule:
    """When to evaluate and when to stop, from training time (evaluations excluded) and steps."""

    def __init__(self, budget_s: float, points: int, max_steps: int | None, every_steps: int | None):
        self.budget_s, self.max_steps, self.every_steps = budget_s, max_steps, every_steps
        self.marks = [budget_s * (k + 1) / points for k in range(points)]

    def stop(self, train_s: float, step: int) -> bool:
        return train_s >= self.budget_s or (self.max_steps is not None and step >= self.max_steps)

    def evaluate(self, train_s: float, step: int) -> bool:
        due = bool(self.marks) and train_s >= self.marks[0]
        while self.marks and train_s >= self.marks[0]:
            self.marks.pop(0)
        by_steps = self.every_steps is not None and step % self.every_steps == 0
        return due or by_steps or self.stop(train_s, step)


def run(args: argparse.Namespace, passthrough: list[str]) -> dict[str, Any]:
    from envs.tabletop.levels import LEVEL_TASKS
    from policies.uio2_policy import UIO2Policy
    from training.data import ExampleBuilder
    from training.run import MAX_FRAMES, TEXT_LEN, heldout_batches, train
    from uio2_core.vocab import Vocabulary, tiny_vocabulary

    wall = time.perf_counter()
    _matplotlib()  # before an hour of work, not after it
    topt = train_options(passthrough)
    if not passthrough:
        topt = train_options(list(TABLETOP_TRAIN))  # the demo's measured tabletop settings
        passthrough = list(TABLETOP_TRAIN)
    tasks = list(LEVEL_TASKS["L1"]) if args.tasks == "all" else [t for t in args.tasks.split(",") if t]
    unknown = [t for t in tasks if t not in LEVEL_TASKS["L1"]]
    if unknown or not tasks:
        raise BenchmarkError(f"--tasks: {unknown or 'none'} not L1 tasks; L1: {', '.join(LEVEL_TASKS['L1'])}")
    checks = [
        (args.budget_min > 0, f"--budget-min must be > 0, got {args.budget_min}"),
        (
            1 <= args.episodes_per_task < EVAL_SEED - args.seed,
            f"--episodes-per-task must be in 1..{EVAL_SEED - args.seed - 1} (the seeds from {EVAL_SEED} are "
            f"held out), got {args.episodes_per_task}",
        ),
        (args.eval_episodes >= 1, f"--eval-episodes must be >= 1, got {args.eval_episodes}"),
        (args.heldout_episodes >= 1, f"--heldout-episodes must be >= 1, got {args.heldout_episodes}"),
        (args.eval_points >= 1, f"--eval-points must be >= 1, got {args.eval_points}"),
        (args.checkpoint_every >= 1, f"--checkpoint-every must be >= 1, got {args.checkpoint_every}"),
        (args.batch_size >= 1, f"--batch-size must be >= 1, got {args.batch_size}"),
    ]
    for ok, message in checks:
        if not ok:
            raise BenchmarkError(message)
    levels = [lv for lv in args.levels.split(",") if lv]
    if bad := [lv for lv in levels if lv not in LEVELS]:
        raise BenchmarkError(f"--levels: {bad} unknown; choose from {', '.join(LEVELS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(args.data_dir) if args.data_dir else out / "data"
    t = time.perf_counter()
    data = [collect(task, args.episodes_per_task, args.seed, data_dir, "train") for task in tasks]
    heldout = {task: collect(task, args.heldout_episodes, EVAL_SEED, data_dir, "heldout") for task in tasks}
    collect_s = time.perf_counter() - t

    vocab = Vocabulary.load(topt.tokenizer) if topt.tokenizer else tiny_vocabulary()
    level_tasks = [t for t in tasks if any(t in LEVEL_TASKS[lv] for lv in levels)]
    result: dict[str, Any] = {
        "command": "python benchmarks/learning.py " + " ".join(args.argv),
        "settings": {
            "model": args.model,
            "batch_size": args.batch_size,
            "budget_s": args.budget_min * 60,
            "max_steps": args.max_steps,
            "seed": args.seed,
            "train_options": passthrough,
            "eval_episodes_per_task": args.eval_episodes,
            "eval_seed": EVAL_SEED,
            "levels": levels,
        },
        "data": {
            "tasks": tasks,
            "episodes_per_task": args.episodes_per_task,
            "episodes": sum(_episodes_in(d) for d in data),
            "steps": sum(_episodes_in(d, "total_frames") for d in data),
            "collect_s": collect_s,
            "heldout_episodes_per_task": args.heldout_episodes,
        },
        "reference": {"VIMA-200M_L1": VIMA_200M_L1},
        "points": [],
    }
    if args.random:
        from policies.registry import make_policy

        t = time.perf_counter()
        result["random"] = rollouts(
            make_policy("random", seed=args.seed), levels, level_tasks, args.eval_episodes, args.num_envs
        )
        result["random_eval_s"] = time.perf_counter() - t
        _write(result, out)

    schedule = Schedule(args.budget_min * 60, args.eval_points, args.max_steps, args.eval_every_steps)
    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a fresh model: `train` would resume from an old checkpoint
    held: dict[str, list[dict]] = {}
    clock = {"start": time.perf_counter(), "evaluating": 0.0}

    def checkpoint(model: Any, step: int) -> dict:
        now = time.perf_counter()
        train_s = now - clock["start"] - clock["evaluating"]
        metrics = (run_dir / "metrics.jsonl").read_text().splitlines()
        loss = json.loads(metrics[-1])["loss"] if metrics else None
        print(f"step {step}: {train_s:.0f} s of training, loss {loss}", flush=True)
        if schedule.evaluate(train_s, step):
            builder = ExampleBuilder(
                model.cfg,
                vocab,
                text_len=TEXT_LEN,
                max_frames=MAX_FRAMES,
                view=topt.view,
                prompt_crop=topt.prompt_crop,
            )
            if not held:
                held.update({task: padded(heldout_batches([str(p)], builder)) for task, p in heldout.items()})
            policy = UIO2Policy(
                model,
                vocab,
                text_len=TEXT_LEN,
                max_frames=MAX_FRAMES,
                view=topt.view,
                template=builder.template,
                prompt_crop=topt.prompt_crop,
                seed=args.seed,
            )
            point = {
                "step": step,
                "train_s": train_s,
                "loss": loss,
                "location_error": _location(model, held),
                "levels": rollouts(policy, levels, level_tasks, args.eval_episodes, args.num_envs),
            }
            point["eval_s"] = time.perf_counter() - now
            result["points"].append(point)
            print(
                "  "
                + ", ".join(f"{lv} {r['success_rate']:.3f}" for lv, r in point["levels"].items())
                + f"; pick {point['location_error']['all'].get('pick_m', float('nan')):.3f} m"
                + f" ({point['eval_s']:.0f} s)",
                flush=True,
            )
            _write(result, out)
        clock["evaluating"] += time.perf_counter() - now
        if schedule.stop(train_s, step):
            raise _BudgetSpent
        return {}

    with contextlib.suppress(_BudgetSpent):
        train(
            [str(d) for d in data],
            args.model,
            args.max_steps or 10**9,
            run_dir,
            batch_size=args.batch_size,
            seed=args.seed,
            progress=False,
            evaluate=checkpoint,
            checkpoint_every=args.checkpoint_every,
            **train_kwargs(topt),
        )
    last = result["points"][-1]
    result["train"] = {
        "steps": last["step"],
        "seconds": last["train_s"],
        "examples_seen": last["step"] * args.batch_size,
    }
    result["final"] = {
        lv: {k: r[k] for k in ("success_rate", "success_ci95", "episodes")}
        for lv, r in last["levels"].items()
    }
    result["wall_s"] = time.perf_counter() - wall
    _write(result, out)
    plot(result, out / "learning_curve.png")
    (out / "learning_tables.md").write_text(markdown(result))
    print("\n" + table(result))
    print(
        f"JSON in {out / 'learning.json'}, curve in {out / 'learning_curve.png'} ({result['wall_s']:.0f} s)"
    )
    return result


def _write(result: dict[str, Any], out: Path) -> None:
    tmp = out / "learning.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out / "learning.json")


def table(result: dict[str, Any]) -> str:
    """Final success per task and level (trained vs random)."""
    last = result["points"][-1]["levels"]
    rand = result.get("random", {})
    rows = [f"{'level':<5} {'task':<28} {'trained':>8} {'95% CI':>14} {'random':>8}"]
    for level, r in last.items():
        for task, tr in [*r["per_task"].items(), ("(level)", r)]:
            rr = (
                rand.get(level, {})
                if task == "(level)"
                else rand.get(level, {}).get("per_task", {}).get(task, {})
            )
            lo, hi = tr["success_ci95"]
            rs = f"{rr['success_rate']:>8.3f}" if rr else f"{'-':>8}"
            rows.append(
                f"{level:<5} {task:<28} {tr['success_rate']:>8.3f} {f'[{lo:.2f}, {hi:.2f}]':>14} {rs}"
            )
    return "\n".join(rows)


def markdown(result: dict[str, Any]) -> str:
    """The doc's tables: success per level at each evaluation, per task at the last, location error."""

    def cell(r: dict[str, Any]) -> str:
        lo, hi = r["success_ci95"]
        return f"{r['success_rate']:.3f} [{lo:.2f}, {hi:.2f}]"

    points, rand = result["points"], result.get("random", {})
    levels = list(points[-1]["levels"])
    lines = ["| step | training s | " + " | ".join(f"{lv} success [95% CI]" for lv in levels) + " |",
             "|---|---|" + "---|" * len(levels)]  # fmt: skip
    for p in points:
        rates = " | ".join(cell(p["levels"][lv]) for lv in levels)
        lines.append(f"| {p['step']} | {p['train_s']:.0f} | {rates} |")
    if rand:
        lines.append("| random | - | " + " | ".join(cell(rand[lv]) for lv in levels) + " |")
    last = points[-1]["levels"]
    lines += ["", f"| task (step {points[-1]['step']}) | " + " | ".join(levels) + " | random L1 |",
              "|---|" + "---|" * (len(levels) + 1)]  # fmt: skip
    for task in last[levels[0]]["per_task"]:
        row = [cell(last[lv]["per_task"][task]) if task in last[lv]["per_task"] else "-" for lv in levels]
        r1 = rand.get("L1", {}).get("per_task", {}).get(task)
        lines.append(f"| {task} | " + " | ".join(row) + f" | {cell(r1) if r1 else '-'} |")
    lines += ["", "| step | pick error m | place error m | picks within 2 cm | places within 2 cm |",
              "|---|---|---|---|---|"]  # fmt: skip
    for p in points:
        a = p["location_error"]["all"]
        if a.get("location_examples"):
            errors = (a["pick_m"], a["place_m"], a["pick_within_2cm"], a["place_within_2cm"])
            lines.append(f"| {p['step']} | " + " | ".join(f"{e:.3f}" for e in errors) + " |")
    return "\n".join(lines) + "\n"


def _matplotlib() -> Any:
    """matplotlib, imported only here (an optional extra), or a one-line error saying how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise BenchmarkError(
            "the learning curve needs matplotlib: pip install 'uio2-embodied[bench]'"
        ) from None
    return matplotlib


def plot(result: dict[str, Any], path: Path) -> None:
    """Success per level against training steps (95% intervals), random dashed, and location error."""
    matplotlib = _matplotlib()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = result["points"]
    steps = [p["step"] for p in points]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=80)
    span = max(steps) - min(steps) or 1
    for i, level in enumerate(points[0]["levels"]):
        rates = [p["levels"][level]["success_rate"] for p in points]
        x = [s + (i - 1) * 0.012 * span for s in steps]  # levels side by side: their intervals overlap
        lo = [r - p["levels"][level]["success_ci95"][0] for r, p in zip(rates, points, strict=True)]
        hi = [p["levels"][level]["success_ci95"][1] - r for r, p in zip(rates, points, strict=True)]
        ax.errorbar(x, rates, yerr=[lo, hi], marker="o", capsize=3, color=f"C{i}", label=f"{level} trained")
        if level in result.get("random", {}):
            ax.axhline(
                result["random"][level]["success_rate"], color=f"C{i}", ls="--", lw=1, label=f"{level} random"
            )
    ax.axhline(VIMA_200M_L1["success_rate"], color="k", ls=":", lw=1, label="VIMA-200M L1 (published)")
    ax.set(
        xlabel="training steps",
        ylabel="success (held-out seeds)",
        ylim=(-0.02, 1.02),
        title=f"{result['settings']['model']}, {result['data']['episodes']} oracle episodes",
    )
    ax.legend(fontsize=7)
    for key, style in (("pick_m", "o-"), ("place_m", "s-")):
        ax2.plot(
            steps,
            [p["location_error"]["all"].get(key, float("nan")) for p in points],
            style,
            label=key.replace("_m", ""),
        )
    ax2.set(
        xlabel="training steps",
        ylabel="error, m (held-out L1 oracle steps)",
        ylim=(0, None),
        title="pick / place location error",
    )
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        epilog="any other flag goes to `uio2 train` (default: " + " ".join(TABLETOP_TRAIN) + ")",
    )
    p.add_argument("--out", required=True, help="output directory (learning.json, learning_curve.png, run/)")
    p.add_argument("--budget-min", type=float, default=60.0, help="training budget, wall-clock minutes")
    p.add_argument("--max-steps", type=int, default=None, help="also stop at this many steps")
    p.add_argument("--model", default="tiny", help="config to train from scratch (tiny | small | ...)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--episodes-per-task", type=int, default=100, help="oracle training episodes per task")
    p.add_argument("--tasks", default="all", help="L1 task families to train on (comma-separated, or all)")
    p.add_argument("--levels", default=",".join(LEVELS), help="levels to evaluate on")
    p.add_argument("--eval-episodes", type=int, default=10, help="held-out episodes per task and level")
    p.add_argument("--eval-points", type=int, default=4, help="evaluations, evenly over the budget")
    p.add_argument("--eval-every-steps", type=int, default=None, help="also evaluate every N steps")
    p.add_argument("--checkpoint-every", type=int, default=25, help="steps between budget checks")
    p.add_argument(
        "--heldout-episodes", type=int, default=4, help="held-out oracle episodes per task (location error)"
    )
    p.add_argument("--num-envs", type=int, default=4, help="envs stepped together in evaluation")
    p.add_argument(
        "--random",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="evaluate a random policy once on the same seeds",
    )
    p.add_argument(
        "--data-dir", default=None, help="where datasets are collected / reused (default OUT/data)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="seconds: 2 tasks, 4 steps, 1 episode (for a test)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, passthrough = parser.parse_known_args(argv)
    args.argv = argv
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    try:
        run(args, passthrough)
    except BenchmarkError as err:
        print(f"learning.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
