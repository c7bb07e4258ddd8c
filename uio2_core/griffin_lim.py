"""Mel spectrogram -> waveform by Griffin-Lim: the vocoder that needs no weights.

Matches the STFT of uio2_core.preprocessing (n_fft 1024, hop 256, symmetric Hann, centred with
reflect padding, Slaney mel filterbank), so `mel_spectrogram(griffin_lim(mel))` approximates `mel`.
The linear power spectrogram is recovered through the pseudo-inverse of the filterbank (clipped at
0); phases by 32 fast Griffin-Lim iterations (momentum 0.99, as librosa's default).
"""

from __future__ import annotations

import functools

import numpy as np

from uio2_core.preprocessing import HOP_LENGTH, N_FFT, mel_filterbank

_WINDOW = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / (N_FFT - 1))


@functools.lru_cache(maxsize=1)
def _mel_pinv() -> np.ndarray:
    return np.linalg.pinv(mel_filterbank())


def mel_to_linear_magnitude(mel_power: np.ndarray) -> np.ndarray:
    """[n_mels, frames] power mel -> [n_fft // 2 + 1, frames] magnitude (pseudo-inverse, clipped >= 0)."""
    power = np.maximum(_mel_pinv() @ np.asarray(mel_power, np.float64), 0.0)
    return np.sqrt(power)


def stft(y: np.ndarray) -> np.ndarray:
    """Centred STFT [bins, frames] with the preprocessing's window and hop."""
    pad = N_FFT // 2
    y = np.pad(np.asarray(y, np.float64), pad, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP_LENGTH]
    return np.fft.rfft(frames * _WINDOW, axis=-1).T


def istft(spec: np.ndarray, length: int) -> np.ndarray:
    """Least-squares inverse of `stft` (windowed overlap-add divided by the summed squared window)."""
    n_frames = spec.shape[1]
    frames = np.fft.irfft(spec.T, n=N_FFT, axis=-1) * _WINDOW
    total = N_FFT + HOP_LENGTH * (n_frames - 1)
    y = np.zeros(total)
    norm = np.zeros(total)
    for t in range(n_frames):
        s = t * HOP_LENGTH
        y[s : s + N_FFT] += frames[t]
        norm[s : s + N_FFT] += _WINDOW**2
    y /= np.where(norm > 1e-10, norm, 1.0)
    pad = N_FFT // 2
    y = y[pad : pad + length]
    return np.pad(y, (0, length - y.shape[0]))


def griffin_lim(mel_power: np.ndarray, n_iter: int = 32, momentum: float = 0.99, seed: int = 0) -> np.ndarray:
    """[n_mels, frames] power mel spectrogram -> float32 waveform of (frames - 1) * hop samples."""
    magnitude = mel_to_linear_magnitude(mel_power)
    length = (magnitude.shape[1] - 1) * HOP_LENGTH
    rng = np.random.default_rng(seed)
    angles = np.exp(2j * np.pi * rng.random(magnitude.shape))
    previous = np.zeros_like(angles)
    for _ in range(n_iter):
        rebuilt = stft(istft(magnitude * angles, length))
        accelerated = rebuilt - (momentum / (1 + momentum)) * previous
        angles = accelerated / np.maximum(np.abs(accelerated), 1e-16)
        previous = rebuilt
    return istft(magnitude * angles, length).astype(np.float32)
