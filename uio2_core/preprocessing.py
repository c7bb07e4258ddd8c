"""Host-side (numpy) preprocessing of images and audio into the exact inputs UIO2 was trained on.

Numerics follow the official code (reference/uio2-architecture.md sections 3.3-3.6, 5.2, 5.3, 11):

* Images: aspect-preserving bilinear resize with antialiasing so the image fits a square, centred zero
  padding, a pixel mask, then CLIP mean/std (ViT inputs) or 2x-1 (VQGAN targets). The resize weights are
  those of TF's / `jax.image.resize(..., "linear", antialias=True)` (scale-and-translate with a
  triangle kernel widened by 1/scale when downsampling), computed here in numpy so data pipelines
  need no device and no compilation per image shape.
* Audio: 16 kHz mono split into 4.08 s segments; each segment -> a librosa-equivalent power
  mel spectrogram (n_fft 1024, hop 256, 128 Slaney mels up to 8 kHz, centred reflect padding) ->
  [256 time, 128 mel] natural log with the official clip and zero mask. The window is
  `scipy.signal.windows.hann(1024)`, which the official code passes as a callable, i.e. the
  *symmetric* Hann window, not librosa's default periodic one.

Everything returns numpy float32 / bool arrays; nothing here touches JAX.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

# ---- constants ------------------------------------------------------------------------------------

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)

IMAGE_INPUT_SIZE = 384
IMAGE_HISTORY_SIZE = 256
IMAGE_TARGET_SIZE = 256
IMAGE_PATCH = 16  # ViT patch
IMAGE_TARGET_PATCH = 8  # VQGAN downsampling factor: target mask is pooled to 8-px cells

AUDIO_SAMPLE_RATE = 16000
AUDIO_SEGMENT_SAMPLES = 65280  # 4.08 s at 16 kHz
AUDIO_BUFFER_SAMPLES = 1600  # 0.1 s: the partial-segment margin (BUFFER_FROM_END in the original)
N_FFT = 1024
HOP_LENGTH = 256
N_MELS = 128
F_MIN = 0.0
F_MAX = 8000.0
AUDIO_FRAMES = AUDIO_SEGMENT_SAMPLES // HOP_LENGTH + 1  # 256 (centred STFT)
AUDIO_PATCH = 16
LOG_CLIP_MIN = 1e-5
LOG_CLIP_MAX = 1e5
AUDIO_VIT_MEAN = -4.26
AUDIO_VIT_STD = 9.14
AUDIOSET_MEAN = -5.0945
AUDIOSET_STD = 3.8312


# ---- images ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResizeInfo:
    """How an image was placed in the padded square, to map coordinates between the two frames.

    Coordinates are continuous pixel coordinates (y, x) with pixel edges at integers; a point u of the
    original image lands at u * scale + offset in the padded one.
    """

    original_size: tuple[int, int]  # (h, w)
    resized_size: tuple[int, int]  # (h, w) of the image content inside the square
    offset: tuple[int, int]  # (top, left) padding
    padded_size: int

    @property
    def scale(self) -> tuple[float, float]:
        """Per-axis scale actually applied (resized / original)."""
        return (
            self.resized_size[0] / self.original_size[0],
            self.resized_size[1] / self.original_size[1],
        )

    def original_to_padded(self, yx: np.ndarray) -> np.ndarray:
        """Map [..., 2] (y, x) points from the original image into the padded square."""
        yx = np.asarray(yx, dtype=np.float64)
        return yx * np.array(self.scale) + np.array(self.offset, dtype=np.float64)

    def padded_to_original(self, yx: np.ndarray) -> np.ndarray:
        """Inverse of `original_to_padded` (e.g. for boxes predicted on the padded input)."""
        yx = np.asarray(yx, dtype=np.float64)
        return (yx - np.array(self.offset, dtype=np.float64)) / np.array(self.scale)


def _as_float_image(image: np.ndarray) -> np.ndarray:
    """Validate an HWC RGB image and return float32 in [0, 1]."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"expected an HWC image with 3 dims, got shape {image.shape}")
    if image.shape[-1] != 3:
        raise ValueError(
            f"expected 3 (RGB) channels in the last axis, got shape {image.shape} "
            "(drop alpha / convert grayscale first)"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image has an empty spatial dimension: shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"image dtype must be uint8 or float in [0, 1], got {image.dtype}")
    out = image.astype(np.float32)
    if not np.isfinite(out).all():
        raise ValueError("image contains NaN or infinite values")
    lo, hi = float(out.min()), float(out.max())
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise ValueError(f"float images must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return np.clip(out, 0.0, 1.0)


@lru_cache(maxsize=64)
def _resize_weights32(in_size: int, out_size: int) -> np.ndarray:
    """float32 `_resize_weights`, kept: an agent resizes frames of the same sizes every step."""
    w = _resize_weights(in_size, out_size).astype(np.float32)
    w.flags.writeable = False
    return w


def _resize_weights(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] weights of antialiased linear scale-and-translate (as TF / jax.image.resize)."""
    scale = out_size / in_size
    inv_scale = 1.0 / scale
    kernel_scale = max(inv_scale, 1.0)
    sample = (np.arange(out_size, dtype=np.float64) + 0.5) * inv_scale - 0.5
    x = np.abs(sample[:, None] - np.arange(in_size, dtype=np.float64)[None, :]) / kernel_scale
    w = np.maximum(0.0, 1.0 - x)
    total = w.sum(axis=1, keepdims=True)
    w = np.where(np.abs(total) > 1000.0 * np.finfo(np.float32).eps, w / np.where(total != 0, total, 1), 0.0)
    inside = (sample >= -0.5) & (sample <= in_size - 0.5)
    return np.where(inside[:, None], w, 0.0)


def resize_bilinear(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Antialiased bilinear resize of a float HWC image (separable, two matrix products)."""
    h, w = image.shape[:2]
    if (h, w) == (out_h, out_w):
        return image.astype(np.float32, copy=True)
    wy = _resize_weights32(h, out_h)
    wx = _resize_weights32(w, out_w)
    img = image.astype(np.float32)
    c = img.shape[2]
    # Contract the axis that shrinks the work most first (matters for large camera frames).
    if out_h * h * w + out_w * w * out_h <= out_w * w * h + out_h * h * out_w:
        tmp = (wy @ img.reshape(h, w * c)).reshape(out_h, w, c)
        return np.einsum("pw,owc->opc", wx, tmp, optimize=True)
    tmp = np.einsum("pw,hwc->hpc", wx, img, optimize=True)
    return (wy @ tmp.reshape(h, out_w * c)).reshape(out_h, out_w, c)


def fit_size(h: int, w: int, size: int) -> tuple[int, int]:
    """Size of an h x w image scaled (aspect kept) to fit a size x size square.

    The long side becomes exactly `size`, the short side floor(short * size / long) (>= 1); integer
    arithmetic avoids the original's float32 truncation occasionally losing a pixel on the long side.
    """
    if h >= w:
        return size, max(1, (w * size) // h)
    return max(1, (h * size) // w), size


def resize_and_pad(image: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, ResizeInfo]:
    """Fit an image into a size x size square: resize keeping aspect, zero-pad centred.

    Returns (float32 [size, size, 3] in [0, 1], bool pixel mask [size, size] = True on image content,
    ResizeInfo). Accepts HWC uint8 or float in [0, 1].
    """
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    size = int(size)
    img = _as_float_image(image)
    h, w = img.shape[:2]
    rh, rw = fit_size(h, w, size)
    resized = np.clip(resize_bilinear(img, rh, rw), 0.0, 1.0)
    top, left = (size - rh) // 2, (size - rw) // 2
    out = np.zeros((size, size, 3), dtype=np.float32)
    out[top : top + rh, left : left + rw] = resized
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + rh, left : left + rw] = True
    return out, mask, ResizeInfo((h, w), (rh, rw), (top, left), size)


def normalize_clip(x: np.ndarray) -> np.ndarray:
    """(x - CLIP mean) / CLIP std over the channel axis; applied after padding, like the original."""
    x = np.asarray(x, dtype=np.float32)
    if x.shape[-1] != 3:
        raise ValueError(f"expected 3 channels in the last axis, got shape {x.shape}")
    return (x - CLIP_MEAN) / CLIP_STD


def to_vqgan_range(x: np.ndarray) -> np.ndarray:
    """[0, 1] -> [-1, 1], the VQGAN's input range (padding becomes -1)."""
    return np.asarray(x, dtype=np.float32) * np.float32(2.0) - np.float32(1.0)


def patch_mask(pixel_mask: np.ndarray, patch: int) -> np.ndarray:
    """Pool a [..., H, W] mask to the patch grid by nearest neighbour.

    TF's nearest resize (half-pixel centres) samples pixel floor((i + 0.5) * patch) = i * patch +
    patch // 2 of each cell, so a patch counts as valid iff that pixel is. Takes numpy or jax arrays
    (the compiled audio preprocessing, `device_audio.prepare_audio`, calls it too).
    """
    m = pixel_mask if hasattr(pixel_mask, "ndim") else np.asarray(pixel_mask)
    if m.ndim < 2:
        raise ValueError(f"pixel mask needs at least 2 dims, got shape {m.shape}")
    h, w = m.shape[-2:]
    if patch < 1 or h % patch or w % patch:
        raise ValueError(f"mask of spatial size {(h, w)} is not divisible into {patch}x{patch} patches")
    c = patch // 2
    return m[..., c::patch, c::patch].astype(bool)


class Placement(NamedTuple):
    """`resize_and_pad` of an h x w image as two matrices: padded = wy @ image @ wx.T per channel.

    Rows of `wy` (columns of `wx`) outside the content are zero, so the product is the resized image
    already placed in the zero-padded square; the device preprocessing applies these matrices
    (`uio2_core.device_preprocessing`)."""

    wy: np.ndarray  # float32 [size, h]
    wx: np.ndarray  # float32 [size, w]
    mask: np.ndarray  # bool [(size / patch) ** 2]: the patch mask, flattened
    info: ResizeInfo


@lru_cache(maxsize=64)
def placement(h: int, w: int, size: int, patch: int) -> Placement:
    """The `Placement` of an h x w frame in a size x size square with `patch`-px patches (kept: an
    agent's frames have a few sizes)."""
    rh, rw = fit_size(h, w, size)
    top, left = (size - rh) // 2, (size - rw) // 2
    wy, wx = np.zeros((size, h), np.float32), np.zeros((size, w), np.float32)
    wy[top : top + rh] = _resize_weights32(h, rh) if rh != h else np.eye(h, dtype=np.float32)
    wx[left : left + rw] = _resize_weights32(w, rw) if rw != w else np.eye(w, dtype=np.float32)
    pixels = np.zeros((size, size), bool)
    pixels[top : top + rh, left : left + rw] = True
    mask = patch_mask(pixels, patch).reshape(-1)
    for a in (wy, wx, mask):
        a.flags.writeable = False
    return Placement(wy, wx, mask, ResizeInfo((h, w), (rh, rw), (top, left), size))


class PreprocessedImage(NamedTuple):
    image: np.ndarray  # float32 [size, size, 3]: CLIP-normalised (inputs) or [-1, 1] (targets)
    mask: np.ndarray  # bool patch mask [size / patch, size / patch]
    info: ResizeInfo


def preprocess_image_input(
    image: np.ndarray, size: int = IMAGE_INPUT_SIZE, patch: int = IMAGE_PATCH
) -> PreprocessedImage:
    """Main image input: resize/pad to `size` (384 released), CLIP-normalise, patch mask (24x24)."""
    padded, mask, info = resize_and_pad(image, size)
    return PreprocessedImage(normalize_clip(padded), patch_mask(mask, patch), info)


def preprocess_image_target(
    image: np.ndarray, size: int = IMAGE_TARGET_SIZE, patch: int = IMAGE_TARGET_PATCH
) -> PreprocessedImage:
    """Image target for the VQGAN: resize/pad to `size` (256 released), [-1, 1], mask on 8-px cells."""
    padded, mask, info = resize_and_pad(image, size)
    return PreprocessedImage(to_vqgan_range(padded), patch_mask(mask, patch), info)


class HistoryFrames(NamedTuple):
    images: np.ndarray  # float32 [T, size, size, 3], CLIP-normalised
    masks: np.ndarray  # bool [T, size / patch, size / patch] patch masks
    frame_mask: np.ndarray  # bool [T]: frame present (False for padding frames)
    infos: list[ResizeInfo]  # one per real frame


def preprocess_history_frames(
    frames: Sequence[np.ndarray] | np.ndarray,
    size: int = IMAGE_HISTORY_SIZE,
    max_frames: int = 8,
    patch: int = IMAGE_PATCH,
    pad_to_max: bool = False,
) -> HistoryFrames:
    """Image history (video frames / prompt images), each frame like an input image at `size` (256).

    With `pad_to_max` the result always has `max_frames` frames, the extra ones zero with False masks,
    so batches have fixed shapes.
    """
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            raise ValueError(f"frames array must be [T, H, W, 3], got shape {frames.shape}")
        frames = list(frames)
    n = len(frames)
    if n > max_frames:
        raise ValueError(f"got {n} history frames but at most max_frames={max_frames} are supported")
    g = size // patch
    t = max_frames if pad_to_max else n
    images = np.zeros((t, size, size, 3), dtype=np.float32)
    masks = np.zeros((t, g, g), dtype=bool)
    infos: list[ResizeInfo] = []
    for k, frame in enumerate(frames):
        padded, mask, info = resize_and_pad(frame, size)
        images[k] = padded
        masks[k] = patch_mask(mask, patch)
        infos.append(info)
    images[:n] = normalize_clip(images[:n])
    frame_mask = np.arange(t) < n
    return HistoryFrames(images, masks, frame_mask, infos)


# ---- audio ----------------------------------------------------------------------------------------


def resample(wave: np.ndarray, sr_from: int, sr_to: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (the original loads with librosa's resampler; small differences)."""
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(sr_from), int(sr_to))
    return resample_poly(np.asarray(wave, dtype=np.float64), sr_to // g, sr_from // g).astype(np.float32)


def num_audio_segments(num_samples: int) -> int:
    """Number of 4.08 s segments for a waveform (the original's `get_num_segments`, in samples).

    Whole segments, plus a trailing partial one only if it is longer than half a segment + 0.1 s;
    a non-empty clip shorter than that still gives one segment.
    """
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    n, rem = divmod(int(num_samples), AUDIO_SEGMENT_SAMPLES)
    if rem - AUDIO_BUFFER_SAMPLES > AUDIO_SEGMENT_SAMPLES / 2:
        n += 1
    if n == 0 and num_samples > 0:
        n = 1
    return n


def split_waveform(wave: np.ndarray, sr: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """Split a mono waveform into [N, 65280] float32 segments of 4.08 s at 16 kHz.

    The end is zero-padded to whole segments; a dropped trailing remainder is cut off (see
    `num_audio_segments`). Other sample rates are resampled to 16 kHz first.
    """
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ValueError(f"expected a mono 1-D waveform, got shape {wave.shape} (average the channels first)")
    if not np.issubdtype(wave.dtype, np.floating):
        raise TypeError(f"waveform must be float (e.g. in [-1, 1]), got dtype {wave.dtype}")
    if not np.isfinite(wave).all():
        raise ValueError("waveform contains NaN or infinite values")
    if sr != AUDIO_SAMPLE_RATE:
        wave = resample(wave, sr, AUDIO_SAMPLE_RATE)
    n = num_audio_segments(wave.shape[0])
    total = n * AUDIO_SEGMENT_SAMPLES
    out = np.zeros(total, dtype=np.float32)
    k = min(total, wave.shape[0])
    out[:k] = wave[:k]
    return out.reshape(n, AUDIO_SEGMENT_SAMPLES)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa htk=False): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mel = f / f_sp
    log_part = min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log_part, mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(
    sr: int = AUDIO_SAMPLE_RATE,
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    fmin: float = F_MIN,
    fmax: float = F_MAX,
) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangular Slaney filters with Slaney area normalisation."""
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:n_mels] / fdiff[:n_mels, None]
    upper = ramps[2 : n_mels + 2] / fdiff[1 : n_mels + 1, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    return weights * enorm[:, None]


_MEL_BASIS = mel_filterbank()
# Symmetric Hann (scipy.signal.windows.hann(N) with sym=True), as passed by the official code.
_WINDOW = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / (N_FFT - 1))


def mel_spectrogram(segment: np.ndarray) -> np.ndarray:
    """Power mel spectrogram [128 mel, frames] of a 16 kHz waveform (librosa's layout and numerics).

    Centred STFT: reflect-pad n_fft // 2 on both sides, frames every 256 samples (256 frames for
    65280 samples), rfft of the windowed frames, |.|^2, Slaney mel filterbank.
    """
    y = np.asarray(segment, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"expected a 1-D waveform segment, got shape {y.shape}")
    pad = N_FFT // 2
    if y.shape[0] <= pad:
        raise ValueError(f"segment too short for reflect padding: {y.shape[0]} samples (need > {pad})")
    y = np.pad(y, pad, mode="reflect")
    n_frames = 1 + (y.shape[0] - N_FFT) // HOP_LENGTH
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP_LENGTH][:n_frames]
    spec = np.fft.rfft(frames * _WINDOW, axis=-1)
    power = spec.real**2 + spec.imag**2  # [frames, bins]
    return (power @ _MEL_BASIS.T).T.astype(np.float32)


def log_mel_from_mel(mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Official post-processing of a [mel, time] power spectrogram -> ([time, mel] log-mel, mask).

    mask = mel != 0; log(clip(mel, 1e-5, 1e5)) set to 0 where the mask is 0 (digital silence).
    """
    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim != 2:
        raise ValueError(f"expected a [mel, time] spectrogram, got shape {mel.shape}")
    x = mel.T
    mask = x != 0
    logmel = np.log(np.clip(x, LOG_CLIP_MIN, LOG_CLIP_MAX)).astype(np.float32)
    return np.where(mask, logmel, np.float32(0.0)), mask


def log_mel_spectrogram(segment: np.ndarray) -> np.ndarray:
    """One 4.08 s segment -> float32 [256 time, 128 mel] masked natural-log mel spectrogram."""
    return log_mel_from_mel(mel_spectrogram(segment))[0]


def normalize_audio_input(x: np.ndarray) -> np.ndarray:
    """AST input normalisation (x + 4.26) / 9.14."""
    return ((np.asarray(x, dtype=np.float32) - AUDIO_VIT_MEAN) / AUDIO_VIT_STD).astype(np.float32)


def denormalize_audio_input(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x, dtype=np.float32) * AUDIO_VIT_STD + AUDIO_VIT_MEAN).astype(np.float32)


def normalize_audio_target(x: np.ndarray) -> np.ndarray:
    """Audio VQGAN target normalisation (x + 5.0945) / 3.8312 (AudioSet statistics)."""
    return ((np.asarray(x, dtype=np.float32) - AUDIOSET_MEAN) / AUDIOSET_STD).astype(np.float32)


def denormalize_audio_target(x: np.ndarray) -> np.ndarray:
    """Back to natural-log mel (what HiFi-GAN / Griffin-Lim consume)."""
    return (np.asarray(x, dtype=np.float32) * AUDIOSET_STD + AUDIOSET_MEAN).astype(np.float32)


def _check_segment(segment: np.ndarray) -> np.ndarray:
    segment = np.asarray(segment)
    if segment.shape != (AUDIO_SEGMENT_SAMPLES,):
        raise ValueError(
            f"expected one 4.08 s segment of {AUDIO_SEGMENT_SAMPLES} samples, got shape {segment.shape} "
            "(use split_waveform)"
        )
    return segment


class PreprocessedAudio(NamedTuple):
    spectrogram: np.ndarray  # float32 [256, 128, 1], normalised
    mask: np.ndarray  # bool: patch mask [16, 8] (inputs) or element mask [256, 128] (targets)


def preprocess_audio_input(segment: np.ndarray, patch: int = AUDIO_PATCH) -> PreprocessedAudio:
    """Audio input for the AST: normalised [256, 128, 1] log-mel and its [16, 8] patch mask."""
    logmel, mask = log_mel_from_mel(mel_spectrogram(_check_segment(segment)))
    return PreprocessedAudio(normalize_audio_input(logmel)[..., None], patch_mask(mask, patch))


def preprocess_audio_target(segment: np.ndarray) -> PreprocessedAudio:
    """Audio target for the audio VQGAN: normalised [256, 128, 1] log-mel and the element mask."""
    logmel, mask = log_mel_from_mel(mel_spectrogram(_check_segment(segment)))
    return PreprocessedAudio(normalize_audio_target(logmel)[..., None], mask)
