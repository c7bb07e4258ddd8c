"""UIO2's text paradigms of the mixture of denoisers (UL2-style, reference 7.1), for text data.

Each paradigm turns a token sequence into (inputs, targets) and is named by its prefix token:
    [Text] [R]  span corruption: ~15% of tokens in spans of mean 3, replaced by sentinels
    [Text] [X]  extreme span corruption: ~50% of tokens in spans of mean 12
    [Text] [S]  causal / prefix LM: a random prefix in, the rest out
The span lengths and rates are UL2's (the released UIO2 code does not include its MoD pipeline).
Image and audio masked denoising ([Image] [R], [Audio] [R]) live in training/masked_denoising.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from uio2_core.vocab import EOS_ID, NUM_SENTINELS, PREFIX_START, sentinel_token

PARADIGMS = {"R": (0.15, 3.0), "X": (0.5, 12.0), "S": None}
PREFIX_IDS = {"R": PREFIX_START + 1, "X": PREFIX_START + 2, "S": PREFIX_START}  # [Text] [R] / [X] / [S]


def _span_mask(n: int, density: float, mean_span: float, rng: np.random.Generator) -> np.ndarray:
    """T5's random segmentation: alternating kept / noise runs with the requested totals."""
    n_noise = round(n * density)
    n_noise = min(max(n_noise, 1), n - 1)
    n_spans = max(1, min(round(n_noise / mean_span), n_noise, n - n_noise, NUM_SENTINELS))

    def segments(total: int) -> np.ndarray:
        cuts = np.sort(rng.choice(np.arange(1, total), n_spans - 1, replace=False)) if n_spans > 1 else []
        return np.diff(np.concatenate([[0], cuts, [total]])).astype(int)

    noise, keep = segments(n_noise), segments(n - n_noise)
    mask = np.zeros(n, bool)
    pos = 0
    for k, s in zip(keep, noise, strict=True):
        pos += k
        mask[pos : pos + s] = True
        pos += s
    return mask


def corrupt(tokens: Sequence[int], paradigm: str, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """(input ids with the paradigm's prefix token, target ids ending in EOS) for one text."""
    if paradigm not in PARADIGMS:
        raise ValueError(f"unknown paradigm {paradigm!r}; expected one of {sorted(PARADIGMS)}")
    toks = [int(t) for t in tokens if t not in (0, EOS_ID)]
    if len(toks) < 2:
        raise ValueError("a text needs at least 2 tokens to be split or corrupted")
    prefix = PREFIX_IDS[paradigm]
    if paradigm == "S":
        cut = int(rng.integers(1, len(toks)))
        return [prefix, *toks[:cut], EOS_ID], [*toks[cut:], EOS_ID]
    density, mean_span = PARADIGMS[paradigm]
    mask = _span_mask(len(toks), density, mean_span, rng)
    inputs, targets, span = [prefix], [], -1
    for i, t in enumerate(toks):
        if mask[i]:
            if i == 0 or not mask[i - 1]:
                span += 1
                inputs.append(sentinel_token(span))
                targets.append(sentinel_token(span))
            targets.append(t)
        else:
            inputs.append(t)
    return [*inputs, EOS_ID], [*targets, EOS_ID]


@dataclass
class TextDenoisingData:
    """Pre-training-style text batches: a paradigm per example, drawn with `weights`; deterministic
    by (seed, position) like `training.data.TrainingData`."""

    texts: Sequence[Sequence[int]]
    batch_size: int
    input_len: int = 128
    target_len: int = 64
    paradigms: tuple[str, ...] = ("R", "X", "S")
    weights: tuple[float, ...] | None = None
    seed: int = 0

    def batch_at(self, position: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, position])
        p = None if self.weights is None else np.asarray(self.weights, float) / np.sum(self.weights)
        inputs = np.zeros((self.batch_size, self.input_len), np.int32)
        targets = np.zeros((self.batch_size, self.target_len), np.int32)
        for b in range(self.batch_size):
            text = self.texts[int(rng.integers(len(self.texts)))]
            x, y = corrupt(text, self.paradigms[int(rng.choice(len(self.paradigms), p=p))], rng)
            x, y = x[: self.input_len], y[: self.target_len]
            inputs[b, : len(x)], targets[b, : len(y)] = x, y
        return {"text": inputs, "targets/text": targets}
