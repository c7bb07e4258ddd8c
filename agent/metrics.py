"""Aggregate per-episode results: success with Wilson 95% intervals, SPL, per-task and per-level rates."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial rate (well-behaved at 0 and 1, unlike the normal one)."""
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _rates(episodes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    n = len(episodes)
    wins = sum(bool(e["success"]) for e in episodes)
    out: dict[str, Any] = {
        "episodes": n,
        "success_rate": wins / n if n else 0.0,
        "success_ci95": list(wilson_interval(wins, n)),
        "mean_steps": sum(e["steps"] for e in episodes) / n if n else 0.0,
        "fallbacks": sum(int(e.get("fallbacks", 0)) for e in episodes),
    }
    for key in ("spl", "soft_spl"):
        values = [e[key] for e in episodes if e.get(key) is not None]
        if values:
            out[key] = sum(values) / len(values)
    return out


def summarize(episodes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Overall rates, plus per-task rates and their mean (a suite's score averages its tasks)."""
    summary = _rates(episodes)
    by_task: dict[str, list] = defaultdict(list)
    for e in episodes:
        by_task[e["task"]].append(e)
    if len(by_task) > 1:
        summary["per_task"] = {t: _rates(es) for t, es in sorted(by_task.items())}
        summary["task_mean_success_rate"] = sum(
            r["success_rate"] for r in summary["per_task"].values()
        ) / len(by_task)
    by_level: dict[str, list] = defaultdict(list)
    for e in episodes:
        if e.get("level"):
            by_level[e["level"]].append(e)
    if by_level:  # a level's score is the mean of its tasks' rates, as the suite's
        summary["per_level"] = {}
        for level, es in sorted(by_level.items()):
            tasks: dict[str, list] = defaultdict(list)
            for e in es:
                tasks[e["task"]].append(e)
            rates = [_rates(t)["success_rate"] for t in tasks.values()]
            summary["per_level"][level] = {**_rates(es), "tasks": len(tasks),
                                           "task_mean_success_rate": sum(rates) / len(rates)}  # fmt: skip
    failures: dict[str, int] = defaultdict(int)
    for e in episodes:
        if not e["success"]:
            failures[e.get("failure_reason") or "unknown"] += 1
    summary["failure_reasons"] = dict(failures)
    return summary


def format_table(summary: dict[str, Any]) -> str:
    rows = summary.get("per_task") or {"all": summary}
    lines = [f"{'task':<32} {'episodes':>8} {'success':>8} {'95% CI':>15} {'SPL':>6}"]
    for task, r in rows.items():
        lo, hi = r["success_ci95"]
        spl = f"{r['spl']:.3f}" if "spl" in r else "-"
        lines.append(
            f"{task:<32} {r['episodes']:>8} {r['success_rate']:>8.3f} {f'[{lo:.2f}, {hi:.2f}]':>15} {spl:>6}"
        )
    if "per_task" in summary:
        lines.append(
            f"{'mean over tasks':<32} {summary['episodes']:>8} {summary['task_mean_success_rate']:>8.3f}"
        )
    return "\n".join(lines)
