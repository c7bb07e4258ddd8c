"""`uio2 plan`: will a training step fit? XLA's answer, without a cluster and without the model.

The real training step (training/trainer.py, same sharding rules, optimiser, remat and dtype) is
lowered and compiled for a mesh of N simulated CPU devices against abstract parameters, optimiser
state and batch (jax.ShapeDtypeStructs: nothing the size of the model is allocated). The compiled
step's memory_analysis() is XLA's own per-device account: arguments (parameters, optimiser state,
batch), outputs (aliased to the donated arguments) and temporaries (activations, gradients, scratch).

The device count is fixed when jax starts, so `uio2 plan` runs the planning in a fresh Python
process with --xla_force_host_platform_device_count set (`run_in_subprocess`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_UNITS = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10, "MIB": 2**20,
          "GIB": 2**30, "TIB": 2**40}  # fmt: skip


def parse_bytes(text: str) -> int:
    """'80GB', '32GiB', '1.5e9' -> bytes."""
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(f"--device-memory takes a size like 80GB or 32GiB, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def parse_mesh(text: str) -> tuple[int, int, int]:
    try:
        mesh = tuple(int(x) for x in text.split(","))
    except ValueError:
        mesh = ()
    if len(mesh) != 3 or min(mesh) < 1:
        raise ValueError(f"--mesh takes three positive sizes data,fsdp,model (e.g. 1,8,1), got {text!r}")
    return mesh  # type: ignore[return-value]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="tiny | large | xl | xxl")
    p.add_argument("--mesh", required=True, help="data,fsdp,model sizes, e.g. 1,8,1 (product: devices)")
    p.add_argument("--batch-size", type=int, required=True, help="global batch (rows over data x fsdp)")
    p.add_argument("--text-len", type=int, default=256, help="input text tokens per row")
    p.add_argument("--target-len", type=int, default=128, help="target text tokens per row")
    p.add_argument("--image", action="store_true", help="one input image per row (the ViT runs)")
    p.add_argument("--image-target", action="store_true", help="an image target per row (1024 tokens)")
    p.add_argument("--remat", choices=["none", "layer"], default="none")
    p.add_argument("--dtype", default="bfloat16", help="compute dtype (parameters stay float32)")
    p.add_argument("--replicate-opt-state", action="store_true",
                   help="the old layout: optimiser state whole on every device (to compare)")  # fmt: skip
    p.add_argument("--pin-rows", action="store_true",
                   help="keep every transformer layer's input and output split by rows like the batch "
                        "(XLA then gathers fsdp-split weights; without it, it may keep every row's "
                        "activations on every device)")  # fmt: skip
    p.add_argument("--device-memory", default=None, help="per-device memory to check against, e.g. 80GB")
    p.add_argument("--extrapolate", action="store_true",
                   help="an estimate in a fraction of the time: compile with 2 and 3 encoder/decoder layers "
                        "and extend XLA's figures linearly to the full depth (parameters and optimiser "
                        "state exact; temporaries came out 0-26%% low against full compiles: "
                        "docs/training.md)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON")


def _sharded_bytes(tree) -> int:
    import jax
    import numpy as np

    leaves = jax.tree.leaves(tree)
    return sum(int(np.prod(x.sharding.shard_shape(x.shape))) * x.dtype.itemsize for x in leaves)


EXTRAPOLATE_LAYERS = (2, 3)


def _train_config(args: argparse.Namespace, mesh: tuple[int, int, int]):
    from training.trainer import TrainConfig

    return TrainConfig(mesh=mesh, remat=args.remat, shard_opt_state=not args.replicate_opt_state,
                       pin_rows=getattr(args, "pin_rows", False))  # fmt: skip


def _compile(cfg, args: argparse.Namespace, mesh: tuple[int, int, int]):
    """(abstract trainer, compiled step's memory_analysis()) for `cfg` on the first prod(mesh) devices."""
    import jax
    import numpy as np

    from training.trainer import Trainer
    from uio2_core.model import abstract_model

    model = abstract_model(cfg, with_vqgan=False)
    tcfg = _train_config(args, mesh)
    trainer = Trainer(model, tcfg, devices=jax.devices()[: int(np.prod(mesh))])
    b = args.batch_size
    batch = {"text": jax.ShapeDtypeStruct((b, args.text_len), np.int32),
             "targets/text": jax.ShapeDtypeStruct((b, args.target_len), np.int32)}  # fmt: skip
    if args.image:
        s = cfg.image_input_size
        batch["image"] = jax.ShapeDtypeStruct((b, s, s, 3), np.float32)
    if args.image_target:
        batch["targets/image"] = jax.ShapeDtypeStruct((b, cfg.decoder_max_image_length), np.int32)
    return trainer, trainer.compile(batch).memory_analysis()


def _memory(mem) -> dict[str, int]:
    return {"arguments": mem.argument_size_in_bytes, "temporaries": mem.temp_size_in_bytes,
            "outputs_not_aliased": mem.output_size_in_bytes - mem.alias_size_in_bytes}  # fmt: skip


def extend_linearly(at: dict[int, dict[str, int]], depth: int) -> dict[str, int]:
    """{layers: {figure: bytes}} at two depths -> each figure on the line through them, at `depth`."""
    (k0, lo), (k1, hi) = sorted(at.items())
    if k0 == k1:
        raise ValueError("extending linearly needs two different depths")
    return {key: round(hi[key] + (hi[key] - lo[key]) * (depth - k1) / (k1 - k0)) for key in lo}


def _extrapolated(cfg, args: argparse.Namespace, mesh: tuple[int, int, int]) -> tuple[Any, dict[str, int]]:
    """XLA's figures at 2 and 3 layers (encoder and decoder alike), extended linearly to the config's
    depth. Arguments grow by exactly one layer's parameters and state per layer; temporaries nearly so
    (docs/training.md gives the error against full compiles)."""
    import dataclasses

    import jax
    import numpy as np

    from training.trainer import Trainer
    from uio2_core.model import abstract_model

    t = cfg.transformer
    if t.num_encoder_layers != t.num_decoder_layers:
        raise ValueError("--extrapolate needs as many encoder as decoder layers")
    depth = t.num_encoder_layers
    lo, hi = (
        _memory(_compile(cfg.replace(transformer=dataclasses.replace(
            t, num_encoder_layers=k, num_decoder_layers=k)), args, mesh)[1])
        for k in EXTRAPOLATE_LAYERS
    )  # fmt: skip
    est = extend_linearly(dict(zip(EXTRAPOLATE_LAYERS, (lo, hi), strict=True)), depth)
    tcfg = _train_config(args, mesh)
    full = Trainer(abstract_model(cfg, with_vqgan=False), tcfg, devices=jax.devices()[: int(np.prod(mesh))])
    return full, est


def plan(args: argparse.Namespace) -> dict[str, Any]:
    """Compile the step on abstract inputs; per-device bytes. Needs prod(mesh) jax devices."""
    import numpy as np

    from uio2_core.config import CONFIG_NAMES, get_config

    if args.model not in CONFIG_NAMES:
        raise ValueError(f"--model must be one of {', '.join(CONFIG_NAMES)}, got {args.model!r}")
    mesh = parse_mesh(args.mesh)
    n = int(np.prod(mesh))
    if args.batch_size % (mesh[0] * mesh[1]):
        rows = mesh[0] * mesh[1]
        raise ValueError(f"--batch-size {args.batch_size} is not a multiple of data x fsdp = {rows}")
    cfg = get_config(args.model).replace(dtype=args.dtype)
    start = time.perf_counter()
    if getattr(args, "extrapolate", False):
        trainer, mem = _extrapolated(cfg, args, mesh)
    else:
        trainer, analysis = _compile(cfg, args, mesh)
        mem = _memory(analysis)
    seconds = time.perf_counter() - start
    params = _sharded_bytes(trainer.state["params"])
    peak = mem["arguments"] + mem["outputs_not_aliased"] + mem["temporaries"]
    out: dict[str, Any] = {
        "model": args.model, "mesh": list(mesh), "devices": n, "batch_size": args.batch_size,
        "text_len": args.text_len, "target_len": args.target_len, "image": args.image,
        "image_target": args.image_target, "remat": args.remat, "dtype": args.dtype,
        "opt_state_sharded": not args.replicate_opt_state,
        "rows_pinned": getattr(args, "pin_rows", False),
        "estimate": (f"extrapolated from compiles at {EXTRAPOLATE_LAYERS} layers"
                     if getattr(args, "extrapolate", False) else None),
        "per_device_bytes": {
            "parameters": params,
            "optimizer_state": _sharded_bytes(trainer.state["opt_state"]),
            "gradients": params,  # float32, laid out like the parameters; part of the temporaries below
            **mem,
            "peak": peak,
        },
        "compile_seconds": round(seconds, 1),
    }  # fmt: skip
    if args.device_memory is not None:
        out["device_memory"] = parse_bytes(args.device_memory)
        out["fits"] = peak <= out["device_memory"]
    return out


def format_plan(p: dict[str, Any]) -> str:
    gb = 1e9
    d = p["per_device_bytes"]
    lines = [
        f"{p['model']} on mesh (data, fsdp, model) = {tuple(p['mesh'])}, {p['devices']} devices; batch "
        f"{p['batch_size']}, text {p['text_len']} -> {p['target_len']} tokens"
        f"{', image input' if p['image'] else ''}{', image target' if p['image_target'] else ''}; "
        f"remat {p['remat']}, compute {p['dtype']}, optimiser state "
        f"{'sharded' if p['opt_state_sharded'] else 'replicated'}"
        f"{', rows pinned' if p.get('rows_pinned') else ''}",
        "per device:",
        f"  parameters       {d['parameters'] / gb:8.2f} GB",
        f"  optimiser state  {d['optimizer_state'] / gb:8.2f} GB",
        f"  gradients        {d['gradients'] / gb:8.2f} GB  (inside the temporaries)",
        f"  temporaries      {d['temporaries'] / gb:8.2f} GB  (activations, gradients, scratch: XLA)",
        f"  peak             {d['peak'] / gb:8.2f} GB  (arguments + unaliased outputs + temporaries)",
    ]
    if p.get("estimate"):
        lines.append(f"ESTIMATE: arguments and temporaries {p['estimate']}, extended linearly;")
        lines.append("  the temporaries came out 0-26% LOW against full compiles (docs/training.md)")
    if "fits" in p:
        verdict = "fits" if p["fits"] else "does NOT fit"
        lines.append(f"{verdict} in {p['device_memory'] / gb:.1f} GB per device")
    lines.append(f"(compiled in {p['compile_seconds']} s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point inside the planning process (its device count already set)."""
    parser = argparse.ArgumentParser(prog="uio2 plan")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        result = plan(args)
    except ValueError as err:
        print(f"uio2 plan: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_plan(result))
    return 0


def argv_from(args: argparse.Namespace) -> list[str]:
    """The command line that `add_arguments` parses back into `args` (for the planning process)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = []
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or value is None or value is False or action.dest == "help":
            continue
        argv += [action.option_strings[0]] if value is True else [action.option_strings[0], str(value)]
    return argv


def run_in_subprocess(argv: list[str]) -> int:
    """Run `main(argv)` in a fresh process with prod(--mesh) simulated CPU devices."""
    args = argparse.ArgumentParser(add_help=False)
    args.add_argument("--mesh", default="1,1,1")
    args.add_argument("--device-memory", default=None)
    known, _ = args.parse_known_args(argv)
    try:
        n = int(__import__("math").prod(parse_mesh(known.mesh)))
        if known.device_memory is not None:
            parse_bytes(known.device_memory)
    except ValueError as err:
        print(f"uio2 plan: error: {err}", file=sys.stderr)
        return 2
    root = str(Path(__file__).resolve().parents[1])
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:  # LLVM's work only: buffer sizes are set before it
        flags += " --xla_backend_optimization_level=0"
    flags = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    code = "import sys; from training.plan import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
