"""The `uio2` command line (the contract in DESIGN.md): one sub-command per job."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _cmd_info(args: argparse.Namespace) -> int:
    from agent.model_info import format_info, model_info

    info = model_info(args.model)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo import run_demo

    summary = run_demo(args.out, seed=args.seed)
    print(json.dumps(summary, indent=2))
    return 0


def parse_dotted(extra: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`--env.width=64 --policy.text_len 96` -> {"env": {"width": 64}, "policy": {"text_len": 96}}.

    Values are read as JSON when they parse (numbers, booleans, lists), else kept as strings."""
    groups: dict[str, dict[str, Any]] = {"env": {}, "policy": {}}
    items = list(extra)
    while items:
        flag = items.pop(0)
        if not flag.startswith("--") or "." not in flag:
            raise ValueError(f"unexpected argument {flag!r} (dotted options look like --env.width=64)")
        key, eq, value = flag[2:].partition("=")
        if not eq:
            if not items:
                raise ValueError(f"{flag} needs a value")
            value = items.pop(0)
        group, _, name = key.partition(".")
        if group not in groups or not name:
            raise ValueError(f"unknown option group in {flag!r}; use --env.<name> or --policy.<name>")
        try:
            groups[group][name] = json.loads(value)
        except json.JSONDecodeError:
            groups[group][name] = value
    return groups


def _env_kwargs(args: argparse.Namespace, dotted: dict[str, dict[str, Any]]) -> dict[str, Any]:
    kwargs = dict(dotted["env"])
    if getattr(args, "level", None):
        if not args.env.startswith("tabletop/"):
            raise ValueError("--level applies to tabletop/<task> envs")
        kwargs["level"] = args.level
    return kwargs


def _cmd_eval(args: argparse.Namespace, dotted: dict[str, dict[str, Any]]) -> int:
    from agent.envs import resolve_env
    from agent.metrics import format_table, summarize
    from agent.rollout import evaluate
    from policies.registry import make_policy

    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    entries = resolve_env(args.env, **_env_kwargs(args, dotted))
    policy = make_policy(args.policy, model=args.model, seed=args.seed, **dotted["policy"])
    episodes = evaluate(entries, policy, args.episodes, args.seed, env_id=args.env, num_envs=args.num_envs,
                        max_steps=args.max_steps)  # fmt: skip
    summary = summarize(episodes)
    results = {
        "env": args.env, "policy": args.policy,
        "model": getattr(policy, "description", args.model) if args.policy == "uio2" else None,
        "level": args.level, "seed": args.seed, "episodes_per_task": args.episodes,
        "env_options": dotted["env"], "episodes": episodes, "summary": summary,
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(out / "results.json")
    print(format_table(summary))
    print(f"results written to {out / 'results.json'}")
    return 0


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--env", required=True, help="tabletop/<task> | tabletop/L1..L4 | pointnav | pointnav-audio | ..."
    )
    p.add_argument("--policy", required=True, help="oracle | random | uio2")
    p.add_argument("--model", default="tiny", help="uio2 model: tiny | large | xl | xxl | checkpoint path")
    p.add_argument("--level", default=None, choices=["L1", "L2", "L3", "L4"], help="tabletop pools")
    p.add_argument("--episodes", type=int, required=True, help="episodes per task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--num-envs", type=int, default=1, help="env copies stepped together (one batched policy call)"
    )
    p.add_argument("--max-steps", type=int, default=None, help="cut episodes short (debugging)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uio2", description="Unified-IO 2 as an embodied agent")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="config and parameter counts (from abstract shapes)")
    info.add_argument("--model", required=True, help="tiny | large | xl | xxl")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_cmd_info)

    ev = sub.add_parser("eval", help="evaluate a policy -> OUT/results.json (extra: --env.K=V, --policy.K=V)")
    _add_run_options(ev)
    ev.add_argument("--out", required=True)
    ev.set_defaults(func=_cmd_eval, dotted=True)

    demo = sub.add_parser("demo", help="the README's main job -> OUT/summary.json")
    demo.add_argument("--out", required=True, help="output directory")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "dotted", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if getattr(args, "dotted", False):
            return args.func(args, parse_dotted(extra))
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"uio2 {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
