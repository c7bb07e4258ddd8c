"""The `uio2` command line (the contract in DESIGN.md): one sub-command per job."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uio2", description="Unified-IO 2 as an embodied agent")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="config and parameter counts (from abstract shapes)")
    info.add_argument("--model", required=True, help="tiny | large | xl | xxl")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_cmd_info)

    demo = sub.add_parser("demo", help="the README's main job -> OUT/summary.json")
    demo.add_argument("--out", required=True, help="output directory")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"uio2 {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
