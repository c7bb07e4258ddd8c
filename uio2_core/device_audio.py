"""Audio inputs prepared in a compiled computation: the host only stacks the raw 4.08 s segments.

`prepare_audio` is `preprocessing.preprocess_audio_input` (centred reflect-padded STFT with the
symmetric Hann window, power, Slaney mel filterbank, masked log, AST normalisation, patch mask)
for a stack of segments, in float32 on the device, so the policy's step needs no host spectrogram.
It reuses the host module's constants. The host path computes in float64; the two agree within
float32 rounding and the digital-silence mask (`mel != 0`) agrees exactly (tests/test_device_audio.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from uio2_core.preprocessing import (
    _MEL_BASIS,
    _WINDOW,
    AUDIO_PATCH,
    AUDIO_SEGMENT_SAMPLES,
    AUDIO_VIT_MEAN,
    AUDIO_VIT_STD,
    HOP_LENGTH,
    LOG_CLIP_MAX,
    LOG_CLIP_MIN,
    N_FFT,
    patch_mask,
)

_HIGHEST = jax.lax.Precision.HIGHEST  # float32 products on every backend (no TF32 on GPUs)


def _frames(y: jax.Array) -> jax.Array:
    """[N, samples] -> the centred STFT's windowed frames [N, frames, N_FFT] (librosa's framing)."""
    pad = N_FFT // 2
    y = jnp.pad(y, ((0, 0), (pad, pad)), mode="reflect")
    n_frames = 1 + (y.shape[1] - N_FFT) // HOP_LENGTH
    idx = np.arange(n_frames)[:, None] * HOP_LENGTH + np.arange(N_FFT)[None, :]
    return y[:, idx] * jnp.asarray(_WINDOW, jnp.float32)


@jax.jit
def mel_power(waveforms: jax.Array) -> jax.Array:
    """[N, samples] float32 -> power mel spectrogram [N, frames, 128] (time-major), float32."""
    spec = jnp.fft.rfft(_frames(waveforms.astype(jnp.float32)), axis=-1)
    power = spec.real**2 + spec.imag**2
    return jnp.einsum("ntf,mf->ntm", power, jnp.asarray(_MEL_BASIS, jnp.float32), precision=_HIGHEST)


@jax.jit
def prepare_audio(waveforms: jax.Array) -> tuple[jax.Array, jax.Array]:
    """waveforms [N, 65280] (4.08 s at 16 kHz) -> (normalised log-mel [N, 256, 128, 1] float32,
    bool patch masks [N, (256 / 16) * (128 / 16)]): `preprocess_audio_input` of each row."""
    if waveforms.ndim != 2 or waveforms.shape[1] != AUDIO_SEGMENT_SAMPLES:
        raise ValueError(f"expected [N, {AUDIO_SEGMENT_SAMPLES}] segments, got shape {waveforms.shape}")
    mel = mel_power(waveforms)
    mask = mel != 0  # digital silence
    logmel = jnp.where(mask, jnp.log(jnp.clip(mel, LOG_CLIP_MIN, LOG_CLIP_MAX)), 0.0)
    x = (logmel - AUDIO_VIT_MEAN) / AUDIO_VIT_STD
    return x[..., None], patch_mask(mask, AUDIO_PATCH).reshape(mask.shape[0], -1)
