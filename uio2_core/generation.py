"""Image and audio generation end to end: prompt batch -> decoder (with classifier-free guidance) ->
VQ-GAN decode -> PNG / spectrogram -> waveform (HiFi-GAN when its weights are given, else Griffin-Lim)
-> WAV. The model must hold its VQ-GANs (load with `with_vqgan=True`).
"""

from __future__ import annotations

import wave
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np

from uio2_core.decoding import DecodeConfig, generate
from uio2_core.image_vqgan import ids_from_tokens
from uio2_core.model import UIO2Model
from uio2_core.preprocessing import AUDIO_SAMPLE_RATE, denormalize_audio_target


def _vqgan(model: UIO2Model, modality: str):
    vq = getattr(model.target_embedders, modality).vqgan
    if vq is None:
        raise ValueError(
            f"{modality} generation needs the {modality} VQ-GAN: load the model with with_vqgan=True"
        )
    return vq


def _decode_config(model: UIO2Model, modality: str, guidance_scale, top_p, temperature) -> DecodeConfig:
    return DecodeConfig(
        max_new_tokens=model.max_target_length(modality),
        method="sample",
        top_p=top_p,
        temperature=temperature,
        guidance_scale=guidance_scale,
        stop_at_eos=False,
    )


def generate_tokens(
    model: UIO2Model,
    batch: Mapping[str, jax.Array],
    modality: str,
    *,
    rng: jax.Array,
    negative_batch: Mapping[str, jax.Array] | None = None,
    guidance_scale: float | None = None,
    top_p: float = 0.9,
    temperature: float = 1.0,
) -> jax.Array:
    """All target tokens of an image (1024) or audio clip (512), sampled with optional guidance."""
    cfg = _decode_config(model, modality, guidance_scale, top_p, temperature)
    return generate(model, batch, modality, cfg, rng=rng, negative_batch=negative_batch).tokens


def tokens_to_images(model: UIO2Model, tokens: jax.Array) -> np.ndarray:
    """Image target tokens [B, g*g] -> RGB float32 [B, H, W, 3] in [0, 1]."""
    vq = _vqgan(model, "image")
    return np.asarray(vq.ids_to_rgb(ids_from_tokens(tokens, vq.cfg.n_embed)), np.float32)


def tokens_to_spectrograms(model: UIO2Model, tokens: jax.Array) -> np.ndarray:
    """Audio target tokens [B, 512] (time-major) -> normalised log-mel [B, mel, time]."""
    vq = _vqgan(model, "audio")
    return np.asarray(vq.decode_ids(ids_from_tokens(tokens, vq.cfg.n_embed)), np.float32)[..., 0]


def spectrogram_to_waveform(spec: np.ndarray, vocoder=None, *, n_iter: int = 32) -> np.ndarray:
    """Normalised log-mel [mel, time] -> 16 kHz float32 wave: HiFi-GAN on the natural-log mel when a
    vocoder is given (as the official SpectogramConverter), else Griffin-Lim on exp(log-mel)."""
    log_mel = denormalize_audio_target(spec)
    if vocoder is not None:
        return np.asarray(vocoder(log_mel), np.float32)
    from uio2_core.griffin_lim import griffin_lim

    return griffin_lim(np.exp(log_mel), n_iter=n_iter)


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """RGB in [0, 1], [H, W, 3] -> 8-bit PNG."""
    from PIL import Image

    pixels = np.clip(np.round(np.asarray(rgb, np.float32) * 255.0), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, "RGB").save(path, format="PNG")


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int = AUDIO_SAMPLE_RATE) -> None:
    """Mono float wave (peak-normalised if it exceeds 1) -> 16-bit PCM WAV."""
    x = np.asarray(samples, np.float64).reshape(-1)
    peak = np.max(np.abs(x)) if x.size else 0.0
    if peak > 1.0:
        x = x / peak
    pcm = np.round(np.clip(x, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())


def generate_images(
    model: UIO2Model,
    batch: Mapping[str, jax.Array],
    out_dir: str | Path,
    *,
    rng: jax.Array,
    negative_batch: Mapping[str, jax.Array] | None = None,
    guidance_scale: float | None = 10.0,
    top_p: float = 0.9,
) -> list[Path]:
    """One PNG per row of `batch` (defaults as the official image_generation task: CFG 10, top-p 0.9)."""
    tokens = generate_tokens(
        model,
        batch,
        "image",
        rng=rng,
        negative_batch=negative_batch,
        guidance_scale=guidance_scale,
        top_p=top_p,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(tokens_to_images(model, tokens)):
        paths.append(out / f"image_{i}.png")
        write_png(paths[-1], image)
    return paths


def generate_audio(
    model: UIO2Model,
    batch: Mapping[str, jax.Array],
    out_dir: str | Path,
    *,
    rng: jax.Array,
    negative_batch: Mapping[str, jax.Array] | None = None,
    guidance_scale: float | None = None,
    top_p: float = 0.9,
    vocoder=None,
) -> list[Path]:
    """One WAV per row of `batch` (official audio_generation: no guidance, top-p 0.9)."""
    tokens = generate_tokens(
        model,
        batch,
        "audio",
        rng=rng,
        negative_batch=negative_batch,
        guidance_scale=guidance_scale,
        top_p=top_p,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, spec in enumerate(tokens_to_spectrograms(model, tokens)):
        paths.append(out / f"audio_{i}.wav")
        write_wav(paths[-1], spectrogram_to_waveform(spec, vocoder))
    return paths
