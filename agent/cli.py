"""The `uio2` command line (the contract in README.md, "Command line"): one sub-command per job."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uio2_errors import OptionError, UserError

LEVELS = ("L1", "L2", "L3", "L4")


def _cmd_info(args: argparse.Namespace) -> int:
    from agent.model_info import format_info, model_info

    info = model_info(args.model)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo import run_demo

    run_demo(args.out, main, seed=args.seed, quick=args.quick, tabletop=not args.pointnav_only)
    return 0


def _cmd_showcase(args: argparse.Namespace) -> int:
    from agent.showcase import run_showcase

    summary = run_showcase(args.out, seed=args.seed)
    print(json.dumps(summary, indent=2))
    return 0


class _UsageError(Exception):
    """argparse's complaint (missing flag, bad choice), printed as one line like every other error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the usage and exit; we print one line
        raise _UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


DOTTED = ("eval", "collect", "rollout", "train", "serve")  # commands that take --env.* / --policy.*


def _flag_value(argv: Sequence[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _dotted(args: argparse.Namespace, extra: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The typed `--env.*` / `--policy.*` options of this command (agent/options.py)."""
    from agent.options import parse_options

    env = getattr(args, "eval_env", None) if args.command == "train" else getattr(args, "env", None)
    policy = None if args.command == "train" else args.policy
    prog = f"uio2 {args.command}" + (f" --env {env}" if env else "")
    env_opts, policy_opts = parse_options(extra, env, policy, prog)
    return {"env": env_opts, "policy": policy_opts}


def _check_run_args(args: argparse.Namespace) -> None:
    """Numbers and combinations argparse cannot check (each a one-line error naming the flag)."""
    if getattr(args, "episodes", 1) < 1:
        raise OptionError(f"--episodes must be >= 1, got {args.episodes}")
    if args.num_envs < 1:
        raise OptionError(f"--num-envs must be >= 1, got {args.num_envs}")
    if args.max_steps is not None and args.max_steps < 1:
        raise OptionError(f"--max-steps must be >= 1, got {args.max_steps}")
    if args.level:
        family, _, name = args.env.partition("/")
        if family not in ("tabletop", "vima"):
            raise OptionError(f"--level applies to tabletop/<task> and vima/<task> envs, not {args.env!r}")
        if name in LEVELS:
            raise OptionError(f"--env {args.env} is already a whole level; drop --level {args.level}")


def _resolve(args: argparse.Namespace, dotted: dict[str, dict[str, Any]], **extra: Any) -> list:
    """The ENV string's tasks; the first env is built once here, so that a bad env option or a missing
    simulator is reported before any model is loaded or progress is shown."""
    from agent.envs import resolve_env

    entries = resolve_env(args.env, **_env_kwargs(args, dotted), **extra)
    try:
        entries[0].make().close()
    except (ValueError, TypeError) as err:  # the env constructor's own check of its arguments
        raise OptionError(f"--env {args.env}: {err}") from err
    return entries


def _env_kwargs(args: argparse.Namespace, dotted: dict[str, dict[str, Any]]) -> dict[str, Any]:
    _check_run_args(args)
    kwargs = dict(dotted["env"])
    if getattr(args, "level", None):
        kwargs["level"] = args.level
    return kwargs


def _make_policy(args: argparse.Namespace, dotted: dict[str, dict[str, Any]]) -> Any:
    """A named policy, or a policy server's client for `remote://HOST:PORT` (the agent layer's job:
    policies never import agent)."""
    if args.policy.startswith(("remote://", "ws://", "wss://")):
        from agent.server.client import RemotePolicy

        if args.model != "tiny":
            raise OptionError(f"--model {args.model} is unused by a remote policy (the server has its own)")

        return RemotePolicy(args.policy, **dotted["policy"])
    from policies.registry import make_policy

    return make_policy(args.policy, model=args.model, seed=args.seed, **dotted["policy"])


def _cmd_serve(args: argparse.Namespace, dotted: dict[str, dict[str, Any]]) -> int:
    from agent.server.serve import run_from_args

    kwargs = dotted["policy"]
    if args.policy == "uio2":  # the saved run options, checked; decoding settings as a DecodeConfig
        from policies.registry import UIO2Options, resolve_options

        options = UIO2Options(**resolve_options(args.model, kwargs))
        kwargs = {**options.policy_kwargs(), "tokenizer": options.tokenizer}
    elif kwargs:
        raise OptionError(f"the {args.policy} policy takes no options, got {', '.join(kwargs)}")
    return run_from_args(args, kwargs)


def _cmd_eval(args: argparse.Namespace, dotted: dict[str, dict[str, Any]]) -> int:
    from agent.metrics import format_table, summarize
    from agent.rollout import evaluate

    entries = _resolve(args, dotted)
    policy = _make_policy(args, dotted)
    episodes = evaluate(entries, policy, args.episodes, args.seed, env_id=args.env, num_envs=args.num_envs,
                        max_steps=args.max_steps)  # fmt: skip
    summary = summarize(episodes)
    results = {
        "env": args.env, "policy": args.policy,
        "model": None if args.policy in ("oracle", "random") else getattr(policy, "description", args.model),
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


def _cmd_collect(args: argparse.Namespace, dotted: dict[str, dict[str, Any]]) -> int:
    from agent.envs import resolve_env
    from agent.metrics import format_table, summarize
    from agent.recording import TrajectoryRecorder
    from agent.rollout import evaluate
    from agent.sinks import RecordingSink
    from training.features import features_for

    entries = resolve_env(args.env, **_env_kwargs(args, dotted))
    probe = entries[0].make()
    features = features_for(probe.observation_space, probe.action_space, depth_stride=args.depth_stride)
    fps = int(probe.metadata.get("render_fps", 10) or 10)
    probe.close()
    policy = _make_policy(args, dotted)
    with TrajectoryRecorder(args.out, fps, features, robot_type=args.env.split("/")[0]) as recorder:
        sink = lambda: RecordingSink(recorder, args.env, args.depth_stride)  # noqa: E731
        run = dict(env_id=args.env, num_envs=args.num_envs, sinks=[sink], max_steps=args.max_steps)
        episodes = evaluate(entries, policy, args.episodes, args.seed, **run)
        total = recorder.num_episodes
    print(format_table(summarize(episodes)))
    print(f"{len(episodes)} episodes recorded; the dataset at {args.out} now holds {total}")
    return 0


def _cmd_rollout(args: argparse.Namespace, dotted: dict[str, dict[str, Any]]) -> int:
    """One episode, printed step by step, with a video."""
    from agent.rollout import EpisodeSink, evaluate
    from agent.sinks import VideoSink

    class Printer(EpisodeSink):
        def step(self, obs, action, reward, terminated, truncated, info, policy_info) -> None:
            self.t = getattr(self, "t", 0) + 1
            text = policy_info.get("decoded_text") or action
            print(
                f"step {self.t:3d}: {text}  reward={reward:.3f}  success={bool(info.get('success', False))}"
            )

    entries = _resolve(args, dotted, render_mode="rgb_array")[:1]
    policy = _make_policy(args, dotted)
    out = Path(args.out)
    sinks = [Printer, lambda: VideoSink(out, suffix=args.video_format)]
    (result,) = evaluate(entries, policy, 1, args.seed, env_id=args.env, sinks=sinks, show_progress=False,
                         max_steps=args.max_steps)  # fmt: skip
    (out / "rollout.json").write_text(json.dumps(result, indent=2))
    print(f"success={result['success']} steps={result['steps']}; video {result['video']}, "
          f"result {out / 'rollout.json'}")  # fmt: skip
    return 0


def _trained_input_options(args: argparse.Namespace) -> dict[str, Any]:
    """How `uio2 train` shapes a tabletop example (camera, prompt crop), for the rollouts of the model it
    trains: without them a model trained on the top view was evaluated on the front one."""
    return {"view": args.view, "prompt_crop": args.prompt_crop, "ground_objects": args.ground_objects}


def _periodic_eval(args: argparse.Namespace, dotted: dict[str, dict[str, Any]]):
    """Rollouts of the model being trained, at every checkpoint (the agent layer's job)."""
    from agent.envs import resolve_env
    from agent.metrics import summarize
    from agent.rollout import evaluate
    from policies.uio2_policy import UIO2Policy
    from training.run import MAX_FRAMES, TEXT_LEN
    from uio2_core.vocab import Vocabulary, tiny_vocabulary

    entries = resolve_env(args.eval_env, **dotted["env"])
    vocab = Vocabulary.load(args.tokenizer) if args.tokenizer else tiny_vocabulary()

    def run(model, step: int) -> dict:  # the policy sees the inputs exactly as training built them
        policy = UIO2Policy(model, vocab, seed=args.seed, text_len=TEXT_LEN, max_frames=MAX_FRAMES,
                            **_trained_input_options(args))  # fmt: skip
        episodes = evaluate(entries, policy, args.eval_episodes, 10_000, env_id=args.eval_env, num_envs=4,
                            show_progress=False)  # fmt: skip
        s = summarize(episodes)
        return {k: s[k] for k in ("success_rate", "success_ci95", "spl", "soft_spl") if k in s}

    return run


def _weights(spec: str | None) -> list[float] | None:
    """`--data-weights 1,0.5` -> [1.0, 0.5]."""
    if spec is None:
        return None
    try:
        return [float(w) for w in spec.split(",")]
    except ValueError:
        raise OptionError(f"--data-weights takes one number per dataset (e.g. 1,0.5), not {spec!r}") from None


def _pack(spec: str | None) -> tuple[int, int] | None:
    """`--pack ENC,DEC` -> (encoder, decoder) token budgets of a packed row."""
    if spec is None:
        return None
    parts = spec.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise OptionError(f"--pack takes two token budgets ENCODER,DECODER (e.g. 320,24), not {spec!r}")
    return int(parts[0]), int(parts[1])


def _cmd_train(args: argparse.Namespace, dotted: dict[str, dict[str, Any]]) -> int:
    from training.denoising_sources import parse_denoise
    from training.run import train

    data = [d for d in args.data.split(",") if d]
    mesh = tuple(int(x) for x in args.mesh.split(","))
    if len(mesh) != 3:
        raise ValueError(f"--mesh takes data,fsdp,model (e.g. -1,1,1), got {args.mesh!r}")
    evaluate = _periodic_eval(args, dotted) if args.eval_env else None
    summary = train(data, args.model, args.steps, args.out, batch_size=args.batch_size, seed=args.seed,
                    learning_rate=args.learning_rate, warmup_steps=args.warmup_steps, mesh=mesh,
                    distributed=args.distributed, tokenizer=args.tokenizer, evaluate=evaluate,
                    checkpoint_every=args.eval_every, denoise=parse_denoise(args.denoise),
                    remat=args.remat, dtype=args.dtype, pack=_pack(args.pack),
                    view=args.view, prompt_crop=args.prompt_crop,
                    location_sigma=args.location_sigma, freeze_vit=args.freeze_vit,
                    heldout=[d for d in (args.heldout or "").split(",") if d],
                    smooth_locations=args.smooth_locations,
                    grid_positions=args.grid_positions, max_minutes=args.max_minutes,
                    ground_objects=args.ground_objects, data_weights=_weights(args.data_weights),
                    logit_share=args.logit_share, grounding_share=args.grounding_share,
                    tabletop_first=args.tabletop_first)  # fmt: skip
    print(json.dumps(summary, indent=2))
    print(
        f"trained model in {args.out} (use it with --model {args.out}); metrics in {args.out}/metrics.jsonl"
    )
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from training.plan import argv_from, run_in_subprocess

    return run_in_subprocess(argv_from(args))  # a fresh process: the device count is set before jax starts


def _cmd_convert(args: argparse.Namespace) -> int:
    from uio2_core.checkpoints.convert import convert

    convert(args.src, args.dst, progress=True, to=args.to)
    print(f"converted {args.src} -> {args.dst}")
    return 0


def _add_run_options(p: argparse.ArgumentParser, episodes: bool = True) -> None:
    p.add_argument(
        "--env", required=True, help="tabletop/<task> | tabletop/L1..L4 | pointnav | pointnav-audio | ..."
    )
    p.add_argument("--policy", required=True, help="oracle | random | uio2 | remote://HOST:PORT")
    p.add_argument("--model", default="tiny", help="uio2 model: tiny | large | xl | xxl | checkpoint path")
    p.add_argument("--level", default=None, choices=["L1", "L2", "L3", "L4"], help="tabletop pools")
    if episodes:
        p.add_argument("--episodes", type=int, required=True, help="episodes per task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--num-envs", type=int, default=1, help="env copies stepped together (one batched policy call)"
    )
    p.add_argument("--max-steps", type=int, default=None, help="cut episodes short (debugging)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="uio2", description="Unified-IO 2 as an embodied agent")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    info = sub.add_parser("info", help="config and parameter counts (from abstract shapes)")
    info.add_argument("--model", required=True, help="tiny | large | xl | xxl")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_cmd_info)

    ev = sub.add_parser("eval", help="evaluate a policy -> OUT/results.json (extra: --env.K=V, --policy.K=V)")
    _add_run_options(ev)
    ev.add_argument("--out", required=True)
    ev.set_defaults(func=_cmd_eval, dotted=True)

    col = sub.add_parser("collect", help="record episodes into a LeRobot v3 dataset (appends)")
    _add_run_options(col)
    col.add_argument("--out", required=True, help="dataset directory")
    col.add_argument("--depth-stride", type=int, default=1, help="keep every n-th depth pixel")
    col.set_defaults(func=_cmd_collect, dotted=True)

    ro = sub.add_parser("rollout", help="watch one episode: steps printed, video written")
    _add_run_options(ro, episodes=False)
    ro.add_argument("--out", required=True)
    ro.add_argument("--video-format", choices=[".gif", ".mp4"], default=".gif")
    ro.set_defaults(func=_cmd_rollout, dotted=True)

    tr = sub.add_parser("train", help="train on recorded datasets -> RUN_DIR (usable as --model RUN_DIR)")
    tr.add_argument("--data", required=True, help="DATASET_DIR[,DATASET_DIR...]")
    tr.add_argument(
        "--model",
        default="tiny",
        help="a config (tiny|small|small8|large|xl|xxl: random init) or a checkpoint (HF, T5X, ours)",
    )
    tr.add_argument(
        "--tokenizer", default=None, help="SentencePiece model (LLaMA's tokenizer.model for official weights)"
    )
    tr.add_argument("--steps", type=int, required=True)
    tr.add_argument("--max-minutes", type=float, default=None,
                    help="wall-clock budget: stop earlier than --steps once it is spent (checkpoint and "
                    "model saved as at the end; the learning-rate schedule stays the one of --steps)")
    tr.add_argument("--out", required=True)
    tr.add_argument("--batch-size", type=int, default=8)
    tr.add_argument("--learning-rate", type=float, default=1e-2)
    tr.add_argument("--warmup-steps", type=int, default=50)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument(
        "--mesh", default="-1,1,1", help="device mesh data,fsdp,model (-1: the remaining devices)"
    )
    tr.add_argument(
        "--distributed", action="store_true", help="multi-host: jax.distributed.initialize() first"
    )
    tr.add_argument(
        "--eval-env", default=None, help="evaluate by rollouts at every checkpoint (--env.K=V apply)"
    )
    tr.add_argument("--eval-every", type=int, default=None, help="checkpoint (and evaluate) every N steps")
    tr.add_argument("--eval-episodes", type=int, default=10)
    tr.add_argument(
        "--denoise",
        default=None,
        help="mix in mixture-of-denoisers steps made from the data: KIND:FRACTION[,...], KIND in "
        "text (prompts: [R]/[X]/[S]), image (frames: masked [Image] [R]), audio (masked [Audio] [R])",
    )
    tr.add_argument("--remat", choices=["none", "layer"], default="none",
                    help="activation checkpointing: recompute each layer in the backward pass")  # fmt: skip
    tr.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="compute dtype (parameters and optimiser state stay float32)")  # fmt: skip
    tr.add_argument("--pack", default=None, metavar="ENC,DEC",
                    help="two examples per row, valid tokens compacted to these encoder,decoder budgets "
                         "(even --batch-size; tokens over a budget are cut and counted)")  # fmt: skip
    tr.add_argument("--view", choices=["front", "top"], default="front", help="tabletop camera to train on")
    tr.add_argument("--prompt-crop", action="store_true", help="crop VIMA prompt images to their object")
    tr.add_argument("--ground-objects", action="store_true",
                    help="tabletop: name the prompt's objects by position and learn to find them "
                         "(policies/grounding.py)")  # fmt: skip
    tr.add_argument("--grounding-share", type=float, default=None,
                    help="with --ground-objects: share of a tabletop dataset's draws that are grounding "
                         "questions (default 0.8)")  # fmt: skip
    tr.add_argument("--tabletop-first", type=int, default=0,
                    help="the first N steps draw only from the tabletop datasets (steps and questions)")
    tr.add_argument("--logit-share", type=float, default=None,
                    help="output logits for this share of the target positions, the valid ones first "
                         "(e.g. 0.5: faster when most targets are short)")  # fmt: skip
    tr.add_argument("--data-weights", default=None,
                    help="how often each --data dataset is drawn (e.g. 1,2,2; default: equally)")  # fmt: skip
    tr.add_argument("--location-sigma", type=float, default=0.0,
                    help="Gaussian location targets over neighbouring bins (sigma in bins; 0: exact bin)")
    tr.add_argument("--freeze-vit", action=argparse.BooleanOptionalAction, default=None,
                    help="keep the image ViT frozen (default, as UIO2); --no-freeze-vit trains it")
    tr.add_argument("--smooth-locations", action="store_true",
                    help="from scratch: location-token embeddings start smooth over their bins")
    tr.add_argument("--grid-positions", action="store_true",
                    help="from scratch: the image ViT's patch positions start as 2D sinusoids of the grid")
    tr.add_argument("--heldout", default=None,
                    help="DATASET_DIR[,...] of held-out tabletop steps: pick/place location error in "
                    "RUN_DIR/eval.jsonl at every checkpoint")
    tr.set_defaults(func=_cmd_train, dotted=True)

    from training.plan import add_arguments as add_plan_arguments

    plan = sub.add_parser("plan", help="will a training step fit a mesh? (XLA, on abstract shapes)")
    add_plan_arguments(plan)
    plan.set_defaults(func=_cmd_plan)

    conv = sub.add_parser("convert", help="between official PyTorch / T5X checkpoints and ours")
    conv.add_argument("src")
    conv.add_argument("dst", help="a new directory (nothing is written on failure)")
    conv.add_argument("--to", choices=["ours", "hf", "hf-safetensors"], default=None,
                      help="target format (default: official -> ours, ours -> hf)")  # fmt: skip
    conv.set_defaults(func=_cmd_convert)

    from agent.server.serve import add_arguments as add_serve_arguments

    sv = sub.add_parser("serve", help="a policy server for --policy remote://HOST:PORT (extra: --policy.K=V)")
    add_serve_arguments(sv)
    sv.set_defaults(func=_cmd_serve, dotted=True)

    demo = sub.add_parser("demo", help="the README's main job -> OUT/summary.json")
    demo.add_argument("--out", required=True, help="output directory")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quick", action="store_true", help="a much smaller run (for tests)")
    demo.add_argument("--pointnav-only", action="store_true",
                      help="leave out the tabletop tasks (by default one model learns both)")  # fmt: skip
    demo.set_defaults(func=_cmd_demo)

    show = sub.add_parser("showcase", help="the tiny model end to end on one synthetic observation")
    show.add_argument("--out", required=True)
    show.add_argument("--seed", type=int, default=0)
    show.set_defaults(func=_cmd_showcase)
    parser.subcommands = sub.choices  # for one-line errors and per-env --help
    return parser


def _print_help(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """`uio2 eval --env tabletop/rotate --help`: the command's flags, then that env's and policy's."""
    from agent.options import options_help

    command = argv[0]
    print(parser.subcommands[command].format_help())
    env = _flag_value(argv, "--eval-env" if command == "train" else "--env")
    policy = None if command == "train" else (_flag_value(argv, "--policy") or "uio2")
    if env is None and command != "serve":
        print("--env.NAME options depend on the env: add it, e.g. `uio2 eval --env pointnav --help`\n")
    print(options_help(env, policy, f"uio2 {command}" + (f" --env {env}" if env else "")))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] in DOTTED and ("-h" in argv or "--help" in argv):
        return _print_help(parser, argv)
    command = argv[0] if argv and not argv[0].startswith("-") else "?"
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "dotted", False):
            parser.subcommands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
        if getattr(args, "dotted", False):
            return args.func(args, _dotted(args, extra))
        return args.func(args)
    except _UsageError as err:
        print(_one_line(err), file=sys.stderr)
        return 2
    except UserError as err:
        print(f"uio2 {command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as err:
        # still raised for bad input by code that predates UserError (env constructors, dataset reader)
        print(f"uio2 {command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
