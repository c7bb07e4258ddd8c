"""`uio2 info`: config and parameter counts from abstract shapes (no weights are allocated)."""

from __future__ import annotations

import dataclasses
from typing import Any

from uio2_core.config import CONFIG_NAMES, get_config
from uio2_core.model import abstract_model, parameter_counts


def model_info(name: str) -> dict[str, Any]:
    """{"model", "params", "components": {name: count}, "config": {...}} for a named config."""
    if name not in CONFIG_NAMES:
        raise ValueError(
            f"unknown model {name!r}: expected one of {', '.join(CONFIG_NAMES)} "
            "(checkpoint paths arrive with "
            "the checkpoint importer)"
        )
    cfg = get_config(name)
    counts = parameter_counts(abstract_model(cfg))
    total = counts.pop("total")
    t = cfg.transformer
    return {
        "model": name,
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
    for name, count in info["components"].items():
        lines.append(f"  {name:<38} {count / 1e6:>12,.3f} M")
    return "\n".join(lines)
