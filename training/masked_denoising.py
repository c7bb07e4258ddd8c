"""UIO2's image and audio `[R]` paradigm of the mixture of denoisers: masked patches in, the whole
image's (or clip's) VQ-GAN tokens out (reference 7.1).

An example is the input with a random subset of its valid patches hidden (through the encoder's
patch mask, so hidden patches are never seen), the prefix token `[Image] [R]` / `[Audio] [R]` as the
text, and as targets the VQ-GAN tokens of the complete input. The released UIO2 code has no MoD
pipeline, so the masking rate is ours: `rate` of the valid patches, 0.5 by default.

The VQ-GAN runs once per item when the examples are built (it is frozen and not part of the
trained model); batches are then cheap and deterministic by (seed, position), as the trainer needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from uio2_core.config import UIO2Config
from uio2_core.image_vqgan import tokens_from_ids
from uio2_core.preprocessing import (
    AUDIO_SEGMENT_SAMPLES,
    preprocess_audio_input,
    preprocess_audio_target,
    preprocess_image_input,
    preprocess_image_target,
)
from uio2_core.vocab import EOS_ID, SPECIAL_TOKEN_IDS

MODALITIES = ("image", "audio")
PREFIX_IDS = {m: SPECIAL_TOKEN_IDS[f"[{m.capitalize()}] [R]"] for m in MODALITIES}


@dataclass
class DenoisingItems:
    """Items ready for masking: model inputs, their patch masks, and the full inputs' target tokens."""

    modality: str
    inputs: np.ndarray  # [N, S, S, 3] CLIP-normalised images, or [N, 256, 128, 1] normalised log-mels
    valid: np.ndarray  # [N, P] bool: input patches that hold data (not padding)
    targets: np.ndarray  # [N, L] int32 VQ-GAN tokens (code + 2)
    target_mask: np.ndarray  # [N, L] bool: target tokens that cover data

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        n = len(self.inputs)
        if n == 0:
            raise ValueError(f"no {self.modality} items to build denoising examples from")
        for name in ("valid", "targets", "target_mask"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows for {n} {self.modality} inputs")


def _encode(vqgan, targets: np.ndarray, batch: int) -> np.ndarray:
    import jax

    encode = jax.jit(lambda x: tokens_from_ids(vqgan.encode_to_ids(x)))  # both target vocabs shift by 2
    return np.concatenate([np.asarray(encode(targets[i : i + batch])) for i in range(0, len(targets), batch)])


def image_items(images: Sequence[np.ndarray], cfg: UIO2Config, vqgan, batch: int = 16) -> DenoisingItems:
    """HWC uint8 (or float in [0, 1]) images -> items; `vqgan` is the model's image VQ-GAN."""
    inputs, valid, targets, target_mask = [], [], [], []
    size = cfg.image_vqgan.resolution
    cell = size // cfg.image_vqgan.grid
    for image in images:
        x = preprocess_image_input(np.asarray(image), cfg.image_input_size)
        y = preprocess_image_target(np.asarray(image), size, cell)
        inputs.append(x.image)
        valid.append(x.mask.reshape(-1))
        targets.append(y.image)
        target_mask.append(y.mask.reshape(-1))
    tokens = _encode(vqgan, np.stack(targets), batch)
    return DenoisingItems("image", np.stack(inputs), np.stack(valid), tokens, np.stack(target_mask))


def _audio_token_mask(element_mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """[256 time, 128 mel] element mask -> [gm * gt] token mask in UIO2's time-major token order."""
    gm, gt = grid
    by_mel = element_mask.T  # [mel, time], as the VQ-GAN sees it
    cells = by_mel.reshape(gm, by_mel.shape[0] // gm, gt, by_mel.shape[1] // gt).any(axis=(1, 3))
    return cells.T.reshape(-1)  # time-major


def audio_items(segments: Sequence[np.ndarray], cfg: UIO2Config, vqgan, batch: int = 16) -> DenoisingItems:
    """Mono 16 kHz waveforms (cut or zero-padded to one 4.08 s segment) -> items."""
    inputs, valid, targets, target_mask = [], [], [], []
    for wave in segments:
        w = np.zeros(AUDIO_SEGMENT_SAMPLES, np.float32)
        clip = np.asarray(wave, np.float32).reshape(-1)[:AUDIO_SEGMENT_SAMPLES]
        w[: len(clip)] = clip
        x, y = preprocess_audio_input(w), preprocess_audio_target(w)
        inputs.append(x.spectrogram)
        valid.append(x.mask.reshape(-1))
        targets.append(np.transpose(y.spectrogram, (1, 0, 2)))  # [mel, time, 1] for the VQ-GAN
        target_mask.append(_audio_token_mask(y.mask, cfg.audio_vqgan.grid))
    tokens = _encode(vqgan, np.stack(targets), batch)
    return DenoisingItems("audio", np.stack(inputs), np.stack(valid), tokens, np.stack(target_mask))


def hide_patches(valid: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """The encoder's patch mask after hiding `rate` of the valid patches (at least one hidden, one kept)."""
    keep = valid.astype(bool).copy()
    idx = np.flatnonzero(keep)
    if len(idx) < 2:
        return keep
    n_hide = min(max(round(rate * len(idx)), 1), len(idx) - 1)
    keep[rng.choice(idx, n_hide, replace=False)] = False
    return keep


@dataclass
class MaskedDenoisingData:
    """Batches of `[Image] [R]` / `[Audio] [R]` examples; deterministic by (seed, position)."""

    items: DenoisingItems
    batch_size: int
    rate: float = 0.5
    text_len: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.rate < 1.0:
            raise ValueError(f"masking rate must be in (0, 1), got {self.rate}")
        if self.text_len < 2:
            raise ValueError("text_len must hold the prefix token and EOS")

    def batch_at(self, position: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, position, 0x52])  # 0x52: "R"
        m, items = self.items.modality, self.items
        rows = rng.integers(len(items.inputs), size=self.batch_size)
        text = np.zeros((self.batch_size, self.text_len), np.int32)
        text[:, 0], text[:, 1] = PREFIX_IDS[m], EOS_ID
        keep = np.stack([hide_patches(items.valid[r], self.rate, rng) for r in rows])
        return {
            "text": text,
            m: items.inputs[rows],
            f"{m}_mask": keep,
            f"targets/{m}": items.targets[rows],
            f"targets/{m}_mask": items.target_mask[rows],
        }
