"""Sound for the audio-goal variant: synthesized sources and a simple binaural spatializer.

The goal plays one looping source; each step the agent hears the next `clip_seconds` of it as it
arrives at its ears. What carries information, as in SoundSpaces (without room impulse responses):
- level: inverse-distance law (1 m reference, 0.25 m floor), plus a path bent around walls that
  decays with the geodesic distance, and -10 dB with a low-pass per wall on the straight line;
- direction: interaural time difference (Woodworth's spherical-head formula, head radius 8.75 cm)
  and interaural level difference (up to about +-6 dB), with a duller sound for sources behind.
"""

from __future__ import annotations

import math

import numpy as np

SAMPLE_RATE = 16000
SPEED_OF_SOUND = 343.0
HEAD_RADIUS = 0.0875
WALL_LOSS_DB = 10.0
SOURCES = ("chirp", "bell", "phone", "noise_pulses")
LOOP_SECONDS = 2.0


def synthesize(
    name: str, seed: int = 0, sample_rate: int = SAMPLE_RATE, seconds: float = LOOP_SECONDS
) -> np.ndarray:
    """A loopable mono source (float32, peak 0.5) by name: one of SOURCES."""
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    rng = np.random.default_rng(seed)
    if name == "chirp":  # rising sweeps, 4 per loop
        period = seconds / 4
        tt = t % period
        f0, f1 = 400.0, 2400.0
        phase = 2 * np.pi * (f0 * tt + (f1 - f0) * tt**2 / (2 * period))
        x = np.sin(phase) * np.minimum(1.0, tt / 0.01)
    elif name == "bell":  # struck harmonics decaying, twice per loop
        tt = t % (seconds / 2)
        env = np.exp(-tt * 4.0)
        x = env * sum(a * np.sin(2 * np.pi * f * tt) for f, a in ((523.0, 1.0), (1046.0, 0.5), (1568.0, 0.3)))
    elif name == "phone":  # dual-tone ring, on 0.4 s, off 0.2 s
        gate = ((t % 0.6) < 0.4).astype(np.float64)
        x = gate * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t))
    elif name == "noise_pulses":  # band-limited noise bursts
        noise = rng.standard_normal(n)
        kernel = np.hanning(9)
        noise = np.convolve(noise, kernel / kernel.sum(), mode="same")
        gate = ((t % 0.25) < 0.12).astype(np.float64)
        x = noise * gate
    else:
        raise ValueError(f"unknown sound source {name!r}; choose from {SOURCES}")
    x = x - x.mean()
    return (0.5 * x / max(1e-9, float(np.abs(x).max()))).astype(np.float32)


def _one_pole_lowpass(x: np.ndarray, alpha: float) -> np.ndarray:
    """y[n] = (1 - alpha) x[n] + alpha y[n-1]; alpha in [0, 1), 0 = no filtering."""
    if alpha <= 0.0:
        return x
    from scipy.signal import lfilter

    return lfilter([1.0 - alpha], [1.0, -alpha], x, axis=-1)


def gains(distance: float, geodesic: float, n_walls: int) -> float:
    """Overall amplitude: the straight path (through walls) and the bent path, summed in power."""
    direct = 1.0 / max(distance, 0.25) * 10 ** (-WALL_LOSS_DB * n_walls / 20.0)
    bent = 0.5 / max(geodesic, 0.25) if n_walls and math.isfinite(geodesic) else 0.0
    return float(math.sqrt(direct**2 + bent**2))


def spatialize(
    source: np.ndarray,
    start: int,
    length: int,
    distance: float,
    geodesic: float,
    azimuth: float,
    n_walls: int,
    channels: int = 2,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """The clip (channels, length) heard at loop offset `start`; azimuth in radians, positive = left."""
    if channels not in (1, 2):
        raise ValueError(f"audio channels must be 1 or 2, got {channels}")
    pad = 64
    idx = (start - pad + np.arange(length + 2 * pad)) % len(source)
    seg = source[idx].astype(np.float64)
    g = gains(distance, geodesic, n_walls)
    behind = math.cos(azimuth) < 0.0
    alpha = min(0.9, 0.35 * n_walls + (0.3 if behind else 0.0))
    seg = _one_pole_lowpass(seg, alpha)
    if channels == 1:
        return np.clip(g * seg[pad : pad + length], -1.0, 1.0).astype(np.float32)[None]
    lateral = math.asin(max(-1.0, min(1.0, math.sin(azimuth))))  # front/back folded, as for real ears
    itd = HEAD_RADIUS / SPEED_OF_SOUND * (abs(lateral) + math.sin(abs(lateral)))
    shift = itd * sample_rate  # the far ear hears it later, by a fractional number of samples
    ild = 10 ** (6.0 * math.sin(lateral) / 20.0)  # near ear louder
    left_gain, right_gain = g * math.sqrt(ild), g / math.sqrt(ild)
    base = np.arange(length) + pad
    near = seg[base]
    far = np.interp(base - shift, np.arange(len(seg)), seg)
    left, right = (near, far) if lateral >= 0 else (far, near)
    out = np.stack([left * left_gain, right * right_gain])
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def count_walls(blocked: np.ndarray, res: float, a: np.ndarray, b: np.ndarray) -> int:
    """How many separate blocked runs the straight segment a-b crosses on the occupancy grid."""
    n = max(2, math.ceil(float(np.hypot(*(b - a))) / (res * 0.5)) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    pts = a + t * (b - a)
    r = np.clip(np.floor(pts[:, 1] / res).astype(int), 0, blocked.shape[0] - 1)
    c = np.clip(np.floor(pts[:, 0] / res).astype(int), 0, blocked.shape[1] - 1)
    hits = blocked[r, c].astype(np.int8)
    return int(((hits[1:] - hits[:-1]) == 1).sum() + hits[0])
