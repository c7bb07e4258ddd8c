"""The model's input batch: names, expected shapes, and checks with errors that say what is wrong.

A batch is a mapping of arrays (any subset of the modalities; masks optional):

    text                [B, Lt] int       token ids, 0 = padding, Lt <= 512
    image               [B, S, S, 3]      float, CLIP-normalised, S = cfg.image_input_size
    image_mask          [B, (S/16)^2]     bool patch mask
    image_history       [B, T, s, s, 3]   float, s = cfg.image_history_size, T <= max_frames
    image_history_mask  [B, T, (s/16)^2]  bool patch mask (a frame with no valid patch is padding)
    image_history_latents       [B, T, n, d]  float, instead of image_history: each frame's perceiver
                                              latents (`HistoryEmbedder.frame_latents`), computed earlier
    image_history_latents_mask  [B, T]        bool, which frames are real
    audio               [B, 256, 128, 1]  float, normalised log-mel (time, mel)
    audio_mask          [B, 128]          bool patch mask
    audio_history       [B, T, 256, 128, 1]
    audio_history_mask  [B, T, 128]
    audio_history_latents       [B, T, n, d]  float, instead of audio_history: each clip's perceiver
                                              latents, as image_history_latents
    audio_history_latents_mask  [B, T]        bool, which clips are real
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from uio2_core.config import UIO2Config

MODALITY_KEYS = ("text", "image", "image_history", "image_history_latents", "audio", "audio_history",
                 "audio_history_latents")  # fmt: skip
MASK_KEYS = tuple(f"{k}_mask" for k in MODALITY_KEYS[1:])


class InputError(ValueError):
    """A model input has the wrong name, shape, dtype or size."""


def expected_shapes(cfg: UIO2Config) -> dict[str, tuple[str | int, ...]]:
    s, h = cfg.image_input_size, cfg.image_history_size
    nl, nla, d = cfg.image_history.num_latents, cfg.audio_history.num_latents, cfg.transformer.d_model
    g, gh = cfg.image_grid, cfg.image_history_grid
    at, am = cfg.audio_input_size
    na = cfg.encoder_max_audio_length
    return {
        "text": ("B", "L"),
        "image": ("B", s, s, 3),
        "image_mask": ("B", g * g),
        "image_history": ("B", "Ti", h, h, 3),
        "image_history_mask": ("B", "Ti", gh * gh),
        "image_history_latents": ("B", "Ti", nl, d),
        "image_history_latents_mask": ("B", "Ti"),
        "audio": ("B", at, am, 1),
        "audio_mask": ("B", na),
        "audio_history": ("B", "Ta", at, am, 1),
        "audio_history_mask": ("B", "Ta", na),
        "audio_history_latents": ("B", "Ta", nla, d),
        "audio_history_latents_mask": ("B", "Ta"),
    }


def _shape_str(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def check_inputs(cfg: UIO2Config, batch: Mapping[str, object]) -> int:
    """Validate a batch against `cfg`; returns the batch size. Raises InputError naming the problem."""
    unknown = sorted(set(batch) - set(MODALITY_KEYS) - set(MASK_KEYS))
    if unknown:
        raise InputError(
            f"unknown input key(s) {unknown}; expected some of {list(MODALITY_KEYS + MASK_KEYS)}"
        )
    if not any(k in batch for k in MODALITY_KEYS):
        raise InputError(f"the batch has no input modality; give at least one of {list(MODALITY_KEYS)}")
    for mk in MASK_KEYS:
        if mk in batch and mk[: -len("_mask")] not in batch:
            raise InputError(f"{mk!r} given without {mk[: -len('_mask')]!r}")
    for key, what in (("image_history", "frames"), ("audio_history", "clips")):
        if key in batch and f"{key}_latents" in batch:
            raise InputError(f"give either {key!r} ({what}) or '{key}_latents', not both")
    for key, pcfg in (
        ("image_history", cfg.image_history),
        ("image_history_latents", cfg.image_history),
        ("audio_history", cfg.audio_history),
        ("audio_history_latents", cfg.audio_history),
    ):
        if key in batch and len(batch[key].shape) > 1 and batch[key].shape[1] > pcfg.max_frames:
            raise InputError(
                f"{key!r} has {batch[key].shape[1]} frames, "
                f"more than the {pcfg.max_frames} the model supports"
            )
    shapes = expected_shapes(cfg)
    sizes: dict[str, int] = {}
    for key, value in batch.items():
        arr = np.asarray(value) if not hasattr(value, "shape") else value
        want = shapes[key]
        if len(arr.shape) != len(want):
            raise InputError(f"{key!r} must have shape {_shape_str(want)}, got {_shape_str(arr.shape)}")
        for dim, (got, exp) in enumerate(zip(arr.shape, want, strict=True)):
            if isinstance(exp, int) and got != exp:
                raise InputError(
                    f"{key!r} must have shape {_shape_str(want)} for config {cfg.name!r}, got "
                    f"{_shape_str(arr.shape)} (dimension {dim})"
                )
            if isinstance(exp, str):
                if exp in sizes and sizes[exp] != got:
                    raise InputError(f"{key!r} has {exp}={got} but another input has {exp}={sizes[exp]}")
                if exp != "L":
                    sizes.setdefault(exp, got)
        kind = np.dtype(arr.dtype).kind
        if key == "text":
            if kind not in "iu":
                raise InputError(f"'text' must hold integer token ids, got dtype {arr.dtype}")
            limit = cfg.transformer.encoder_max_text_length
            if arr.shape[1] > limit:
                raise InputError(f"'text' has {arr.shape[1]} tokens, more than the limit of {limit}")
        elif key.endswith("_mask"):
            if kind not in "biu":
                raise InputError(f"{key!r} must be a boolean mask, got dtype {arr.dtype}")
        elif kind != "f":
            raise InputError(
                f"{key!r} must be a float array (normalised as uio2_core.preprocessing does), got dtype "
                f"{arr.dtype}"
            )
    return int(sizes["B"])
