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
