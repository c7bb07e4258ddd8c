"""Mixture-of-denoisers batch sources made from the training datasets themselves (`uio2 train --denoise`).

- text:  UIO2's text paradigms ([R], [X], [S]; training/denoising.py) on the datasets' task prompts
- image: masked image denoising ([Image] [R]) on the recorded camera frames
- audio: masked audio denoising ([Audio] [R]) on the recorded audio (PointNav's audio goal)

So a robot dataset doubles as pre-training-style data for the frozen-free parts of the model. At
most `max_items` frames / clips are tokenized (evenly spaced over the data), once, at start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from training.denoising import TextDenoisingData
from training.masked_denoising import MaskedDenoisingData, audio_items, image_items

KINDS = ("text", "image", "audio")


def parse_denoise(spec: str | None) -> dict[str, float]:
    """'image:0.2,text:0.1' -> {"image": 0.2, "text": 0.1}: the fraction of steps for each paradigm."""
    out: dict[str, float] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        kind, sep, value = part.partition(":")
        kind = kind.strip()
        if kind not in KINDS or not sep:
            raise ValueError(f"--denoise takes KIND:FRACTION with KIND in {KINDS}, got {part!r}")
        try:
            frac = float(value)
        except ValueError:
            raise ValueError(f"--denoise fraction for {kind} must be a number, got {value!r}") from None
        if not 0.0 < frac < 1.0:
            raise ValueError(f"--denoise fraction for {kind} must be in (0, 1), got {frac}")
        out[kind] = frac
    if sum(out.values()) >= 1.0:
        raise ValueError(f"--denoise fractions {out} leave no steps for the task data (they sum to >= 1)")
    return out


def _evenly(items: list[Any], n: int) -> list[Any]:
    if len(items) <= n:
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n).round()]


def _frames(datasets: list[Any], max_items: int) -> list[np.ndarray]:
    frames = []
    for ds in datasets:
        keys = [k for k in ds.features if k.startswith("observation.images.")]
        key = "observation.images.front" if "observation.images.front" in keys else (keys or [None])[0]
        if key is None:
            continue
        for e in range(ds.num_episodes):
            frames.extend(ds.episode(e)[key])
    return _evenly(frames, max_items)


def _clips(datasets: list[Any], max_items: int) -> list[np.ndarray]:
    clips = []
    for ds in datasets:
        if "observation.audio" not in ds.features:
            continue
        for e in range(ds.num_episodes):
            clips.extend(a.mean(axis=0) for a in ds.episode(e)["observation.audio"])  # channels -> mono
    return _evenly(clips, max_items)


def denoising_sources(
    spec: dict[str, float], datasets: list[Any], cfg: Any, vocab: Any, vqgans: dict[str, Any], *,
    batch_size: int, seed: int = 0, max_items: int = 256,
) -> list[tuple[Callable[[int], dict[str, Any]], float]]:  # fmt: skip
    """(batch_at, fraction) per requested paradigm; `vqgans` maps image/audio to the model's VQ-GANs."""
    sources = []
    for kind, frac in spec.items():
        if kind == "text":
            tasks = sorted({str(t) for ds in datasets for t in ds.tasks})
            texts = [ids for ids in (vocab.encode(t) for t in tasks) if len(ids) >= 2]
            if not texts:
                raise ValueError("--denoise text: the datasets' task prompts are all shorter than 2 tokens")
            data: Any = TextDenoisingData(texts, batch_size, seed=seed)
        else:
            items = _frames(datasets, max_items) if kind == "image" else _clips(datasets, max_items)
            if not items:
                raise ValueError(f"--denoise {kind}: the datasets hold no {kind} observations")
            build = image_items if kind == "image" else audio_items
            data = MaskedDenoisingData(build(items, cfg, vqgans[kind]), batch_size, seed=seed)
        sources.append((data.batch_at, frac))
    return sources
