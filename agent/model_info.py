"""`uio2 info`: config and parameter counts from abstract shapes (no weights are allocated).

`--model` is a config name or a checkpoint directory: one of our runs (its config, and the options it
was trained with, from model.json), an official Hugging Face copy (config.json) or a T5X checkpoint
(its size from the directory name). Only metadata is read.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from uio2_core.config import CONFIG_NAMES, UIO2Config, get_config
from uio2_core.model import abstract_model, parameter_counts
from uio2_errors import MissingFileError, OptionError


def _checkpoint_config(path: Path) -> tuple[UIO2Config, str, dict[str, Any]]:
    """(config, format, saved run options) of a checkpoint directory, from its metadata."""
    from uio2_core.checkpoints.formats import detect_format

    if not path.exists():
        raise MissingFileError(
            f"unknown model {str(path)!r}: not a config ({', '.join(CONFIG_NAMES)}) nor a checkpoint dir"
        )
    fmt = detect_format(path)
    if fmt == "ours":
        from policies.registry import run_options
        from uio2_core.checkpoints.ours import read_config

        return read_config(path), fmt, run_options(str(path))
    if fmt == "hf":
        from uio2_core.checkpoints.hf import read_config

        return read_config(path), fmt, {}
    size = path.name.split("-")[0]
    if size not in ("large", "xl", "xxl"):
        raise OptionError(f"{path}: cannot tell a T5X checkpoint's size from its name (large-3m, xl-3m, ...)")
    return get_config(size), fmt, {}


def model_info(name: str) -> dict[str, Any]:
    """{"model", "params", "components": {name: count}, "config": {...}} for a config or checkpoint
    (checkpoints add "format" and, for our runs, "trained_with": the options saved with it)."""
    extra: dict[str, Any] = {}
    if name in CONFIG_NAMES:
        cfg = get_config(name)
    else:
        cfg, fmt, saved = _checkpoint_config(Path(name))
        extra = {"format": fmt, **({"trained_with": saved} if saved else {})}
    counts = parameter_counts(abstract_model(cfg))
    total = counts.pop("total")
    t = cfg.transformer
    return {
        "model": name,
        **extra,
        "params": total,
        "components": counts,
        "config": {
            "d_model": t.d_model,
            "num_heads": t.num_heads,
            "head_dim": t.head_dim,
            "mlp_dim": t.mlp_dim,
            "encoder_layers": t.num_encoder_layers,
            "decoder_layers": t.num_decoder_layers,
            "vocab": {"text": t.text_vocab_size, "image": t.image_vocab_size, "audio": t.audio_vocab_size},
            "image_history": dataclasses.asdict(cfg.image_history),
            "audio_history": dataclasses.asdict(cfg.audio_history),
            "image_input_size": cfg.image_input_size,
            "image_history_size": cfg.image_history_size,
            "dtype": cfg.dtype,
        },
    }


def format_info(info: dict[str, Any]) -> str:
    lines = [f"UIO2 {info['model']}: {info['params'] / 1e6:,.2f} M parameters"]
    c = info["config"]
    lines.append(
        f"  d_model {c['d_model']}, heads {c['num_heads']} x {c['head_dim']}, mlp {c['mlp_dim']}, "
        f"{c['encoder_layers']} + {c['decoder_layers']} layers"
    )
    if "trained_with" in info:
        lines.append("  trained with " + ", ".join(f"{k}={v}" for k, v in info["trained_with"].items()))
    for name, count in info["components"].items():
        lines.append(f"  {name:<38} {count / 1e6:>12,.3f} M")
    return "\n".join(lines)
