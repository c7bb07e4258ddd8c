"""`prepare_audio` (compiled) against the host float64 `preprocess_audio_input`."""

import numpy as np
import pytest

from uio2_core.device_audio import mel_power, prepare_audio
from uio2_core.preprocessing import AUDIO_SEGMENT_SAMPLES, mel_spectrogram, preprocess_audio_input


def _clips() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(AUDIO_SEGMENT_SAMPLES) / 16000
    speech = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    speech = (speech + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    part = speech.copy()
    part[10000:40000] = 0  # silent stretch in the middle
    short = np.zeros_like(speech)
    short[:20000] = speech[:20000]  # a short clip zero-padded at the end
    return np.stack([speech, part, short, np.zeros_like(speech)])


def test_prepare_audio_matches_host() -> None:
    clips = _clips()
    x, m = prepare_audio(clips)
    assert x.shape == (4, 256, 128, 1) and m.shape == (4, 128)
    for i, clip in enumerate(clips):
        host = preprocess_audio_input(clip)
        np.testing.assert_allclose(np.asarray(x[i]), host.spectrogram, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(m[i]), host.mask.reshape(-1))
    # the element-level digital-silence mask agrees exactly too, and the cases exercise it
    mel = np.asarray(mel_power(clips))
    for i, clip in enumerate(clips):
        host_mel = mel_spectrogram(clip).T
        np.testing.assert_array_equal(mel[i] != 0, host_mel != 0)
    assert [(mel[i] == 0).any() for i in range(4)] == [False, True, True, True]
    assert not np.asarray(m[3]).any()


def test_prepare_audio_rejects_wrong_length() -> None:
    with pytest.raises(ValueError, match="segments"):
        prepare_audio(np.zeros((1, 1000), np.float32))


def test_policy_segments_through_prepare_audio_match_audio_segment() -> None:
    """What the policy's step does (`audio_wave` on the host, `prepare_audio` compiled) against the
    host `audio_segment`: a short stereo clip (mono, zero-padded), a long one (last 4.08 s), none."""
    from policies.prompting import audio_segment, audio_wave

    rng = np.random.default_rng(1)
    long = 0.2 * rng.standard_normal(AUDIO_SEGMENT_SAMPLES + 5000)
    clips = [0.2 * rng.standard_normal((2, 3000)), long, None]  # (channels, samples), (samples,), none
    x, m = prepare_audio(np.stack([audio_wave(c) for c in clips]))
    for i, clip in enumerate(clips):
        spec, mask = audio_segment(clip)
        np.testing.assert_allclose(np.asarray(x[i]), spec, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(m[i]), mask)
