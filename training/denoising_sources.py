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

from policies.prompting import mono
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


def _evenly(datasets: list[Any], key_for: Callable[[Any], str | None], max_items: int) -> list[np.ndarray]:
    """Up to `max_items` values of one column, evenly spaced over all frames; an episode is read only
    when one of its frames is picked, and only the picked frames are kept."""
    frames = [(d, e, t) for d, ds in enumerate(datasets) if key_for(ds)
              for e in range(ds.num_episodes) for t in range(int(ds.episode_row(e)["length"]))]  # fmt: skip
    if len(frames) > max_items:
        frames = [frames[int(i)] for i in np.linspace(0, len(frames) - 1, max_items).round()]
    picked: dict[tuple[int, int], list[int]] = {}
    for d, e, t in frames:
        picked.setdefault((d, e), []).append(t)
    out = []
    for (d, e), steps in picked.items():
        column = datasets[d].episode(e)[key_for(datasets[d])]
        out.extend(column[t] for t in steps)
    return out


def _image_key(ds: Any) -> str | None:
    keys = [k for k in ds.features if k.startswith("observation.images.")]
    return "observation.images.front" if "observation.images.front" in keys else (keys or [None])[0]


def _audio_key(ds: Any) -> str | None:
    return "observation.audio" if "observation.audio" in ds.features else None


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
            items = _evenly(datasets, _image_key if kind == "image" else _audio_key, max_items)
            if kind == "audio":
                items = [mono(clip) for clip in items]  # (channels, samples) -> samples
            if not items:
                raise ValueError(f"--denoise {kind}: the datasets hold no {kind} observations")
            build = image_items if kind == "image" else audio_items
            data = MaskedDenoisingData(build(items, cfg, vqgans[kind]), batch_size, seed=seed)
        sources.append((data.batch_at, frac))
    return sources
