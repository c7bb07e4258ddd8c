"""Image and audio preprocessing numerics (reference sections 3.3-3.6, 5.2, 5.3, 11)."""

from __future__ import annotations

import numpy as np
import pytest

from uio2_core import preprocessing as P

SEG = P.AUDIO_SEGMENT_SAMPLES


# ---- image geometry -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("h", "w"),
    [(100, 200), (300, 150), (50, 50), (100, 201), (480, 640), (1, 7), (384, 384), (700, 300)],
)
def test_resize_and_pad_geometry(h: int, w: int) -> None:
    size = 384
    colour = np.array([200, 30, 90], dtype=np.uint8)
    img = np.broadcast_to(colour, (h, w, 3)).copy()
    out, mask, info = P.resize_and_pad(img, size)
    assert out.shape == (size, size, 3) and out.dtype == np.float32
    assert mask.shape == (size, size) and mask.dtype == bool
    rh, rw = info.resized_size
    # Aspect kept, long side fills the square, short side floor(short * size / long).
    assert max(rh, rw) == size
    long_, short = max(h, w), min(h, w)
    assert min(rh, rw) == max(1, short * size // long_)
    assert (rh >= rw) == (h >= w)
    # Mask area and centring (padding on opposite sides differs by at most one pixel).
    assert mask.sum() == rh * rw
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    top, bottom = rows[0], size - 1 - rows[-1]
    left, right = cols[0], size - 1 - cols[-1]
    assert 0 <= bottom - top <= 1 and 0 <= right - left <= 1
    assert info.offset == (top, left)
    # Content is the (constant) colour, padding is exactly zero.
    np.testing.assert_allclose(out[mask], np.broadcast_to(colour / 255.0, (rh * rw, 3)), atol=1e-6)
    assert np.all(out[~mask] == 0)


def test_resize_info_maps_coordinates_back() -> None:
    _, _, info = P.resize_and_pad(np.zeros((120, 300, 3), np.uint8), 384)
    corners = np.array([[0.0, 0.0], [120.0, 300.0], [60.0, 150.0]])
    padded = info.original_to_padded(corners)
    top, left = info.offset
    np.testing.assert_allclose(padded[0], [top, left])
    np.testing.assert_allclose(padded[1], [top + info.resized_size[0], left + info.resized_size[1]])
    np.testing.assert_allclose(info.padded_to_original(padded), corners, atol=1e-9)
    assert info.scale == pytest.approx((info.resized_size[0] / 120, info.resized_size[1] / 300))


@pytest.mark.parametrize(("h", "w", "size"), [(90, 160, 64), (37, 23, 64), (300, 200, 48)])
def test_resize_matches_jax_antialiased_bilinear(h: int, w: int, size: int) -> None:
    import jax
    import jax.numpy as jnp

    img = np.random.default_rng(h * w).random((h, w, 3)).astype(np.float32)
    out, _, info = P.resize_and_pad(img, size)
    rh, rw = info.resized_size
    ref = np.asarray(jax.image.resize(jnp.asarray(img), (rh, rw, 3), "linear", antialias=True))
    top, left = info.offset
    np.testing.assert_allclose(out[top : top + rh, left : left + rw], np.clip(ref, 0, 1), atol=2e-5)


def test_antialias_averages_when_downsampling() -> None:
    # A 1-pixel checkerboard shrunk 8x must come out near its mean grey (plain bilinear would alias).
    checker = (np.indices((256, 256)).sum(0) % 2).astype(np.float32)
    img = np.repeat(checker[..., None], 3, axis=-1)
    out, _, _ = P.resize_and_pad(img, 32)
    np.testing.assert_allclose(out, 0.5, atol=0.02)


def test_uint8_and_float_inputs_agree() -> None:
    img = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    a, _, _ = P.resize_and_pad(img, 64)
    b, _, _ = P.resize_and_pad(img.astype(np.float64) / 255.0, 64)
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize(
    ("image", "exc", "match"),
    [
        (np.zeros((8, 8), np.uint8), ValueError, "HWC"),
        (np.zeros((2, 8, 8, 3), np.uint8), ValueError, "HWC"),
        (np.zeros((8, 8, 4), np.uint8), ValueError, "channels"),
        (np.zeros((8, 8, 1), np.float32), ValueError, "channels"),
        (np.zeros((8, 8, 3), np.int32), TypeError, "dtype"),
        (np.zeros((8, 8, 3), bool), TypeError, "dtype"),
        (np.full((8, 8, 3), np.nan, np.float32), ValueError, "NaN"),
        (np.full((8, 8, 3), 255.0, np.float32), ValueError, r"\[0, 1\]"),
        (np.zeros((0, 8, 3), np.uint8), ValueError, "empty"),
    ],
)
def test_bad_images_raise_clear_errors(image: np.ndarray, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        P.resize_and_pad(image, 32)


# ---- normalisation and masks ----------------------------------------------------------------------


def test_clip_normalisation_numbers() -> None:
    mean = np.array([0.48145466, 0.4578275, 0.40821073])
    std = np.array([0.26862954, 0.26130258, 0.27577711])
    np.testing.assert_allclose(P.normalize_clip(mean.astype(np.float32)), 0.0, atol=1e-6)
    np.testing.assert_allclose(P.normalize_clip(np.ones(3)), (1 - mean) / std, rtol=1e-6)
    np.testing.assert_allclose(
        P.normalize_clip(np.zeros((2, 2, 3))), np.broadcast_to(-mean / std, (2, 2, 3)), rtol=1e-6
    )
    with pytest.raises(ValueError, match="3 channels"):
        P.normalize_clip(np.zeros((4, 4)))
    np.testing.assert_allclose(P.to_vqgan_range(np.array([0.0, 0.25, 1.0])), [-1.0, -0.5, 1.0])


def test_preprocess_image_input_is_normalised_after_padding() -> None:
    # 192x384 content in a 384 square: rows 96..287, exactly patch rows 6..17 of the 24x24 grid.
    img = np.full((100, 200, 3), 255, np.uint8)
    res = P.preprocess_image_input(img, 384)
    assert res.image.shape == (384, 384, 3) and res.mask.shape == (24, 24) and res.mask.dtype == bool
    expected = np.zeros((24, 24), bool)
    expected[6:18] = True
    np.testing.assert_array_equal(res.mask, expected)
    np.testing.assert_allclose(res.image[0, 0], -P.CLIP_MEAN / P.CLIP_STD, rtol=1e-6)  # padding
    np.testing.assert_allclose(res.image[200, 200], (1 - P.CLIP_MEAN) / P.CLIP_STD, rtol=1e-6)


def test_patch_mask_nearest_centre_sample() -> None:
    m = np.zeros((32, 32), bool)
    m[:, :20] = True  # patch column 1 (pixels 16..31) has its centre pixel 24 outside -> invalid
    np.testing.assert_array_equal(P.patch_mask(m, 16), [[True, False], [True, False]])
    m[:, :25] = True  # now pixel 24 is inside -> valid
    assert P.patch_mask(m, 16).all()
    assert P.patch_mask(np.zeros((3, 64, 64), bool), 16).shape == (3, 4, 4)
    with pytest.raises(ValueError, match="divisible"):
        P.patch_mask(np.zeros((30, 32), bool), 16)


def test_preprocess_image_target() -> None:
    res = P.preprocess_image_target(np.full((64, 32, 3), 255, np.uint8), 256)
    assert res.image.shape == (256, 256, 3) and res.mask.shape == (32, 32)
    assert res.image.min() == -1.0 and res.image.max() == pytest.approx(1.0)
    assert np.all(res.image[:, :64] == -1.0)  # left padding
    # Content columns 64..191 are the 8-px cells 8..23.
    assert res.mask[:, 8:24].all() and not res.mask[:, :8].any() and not res.mask[:, 24:].any()


def test_history_frames() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((40, 60), (60, 40), (48, 48))]
    res = P.preprocess_history_frames(frames, size=48, max_frames=4)
    assert res.images.shape == (3, 48, 48, 3) and res.masks.shape == (3, 3, 3)
    assert res.frame_mask.tolist() == [True, True, True] and len(res.infos) == 3
    single = P.preprocess_image_input(frames[1], 48)
    np.testing.assert_allclose(res.images[1], single.image, atol=1e-6)
    np.testing.assert_array_equal(res.masks[1], single.mask)

    padded = P.preprocess_history_frames(np.stack([frames[2]] * 2), size=48, max_frames=4, pad_to_max=True)
    assert padded.images.shape == (4, 48, 48, 3)
    assert padded.frame_mask.tolist() == [True, True, False, False]
    assert not padded.masks[2:].any() and padded.masks[:2].all()
    with pytest.raises(ValueError, match="max_frames=2"):
        P.preprocess_history_frames(frames, size=48, max_frames=2)


# ---- audio: segmentation --------------------------------------------------------------------------


def test_segment_counting_rule() -> None:
    half_plus_buffer = SEG // 2 + int(0.1 * P.AUDIO_SAMPLE_RATE)  # 2.04 s + 0.1 s = 34240 samples
    assert SEG == round(4.08 * 16000) == 65280
    cases = {
        0: 0,
        1: 1,  # any non-empty clip gives at least one segment
        half_plus_buffer: 1,
        SEG - 1: 1,
        SEG: 1,
        SEG + half_plus_buffer: 1,  # remainder exactly half + 0.1 s: dropped (strictly longer needed)
        SEG + half_plus_buffer + 1: 2,
        2 * SEG: 2,
        2 * SEG + 100: 2,
        5 * SEG: 5,
    }
    for n, expected in cases.items():
        assert P.num_audio_segments(n) == expected, n


def test_split_waveform_pads_and_truncates() -> None:
    rng = np.random.default_rng(0)
    wave = rng.uniform(-1, 1, SEG + SEG // 2 + 1700).astype(np.float32)  # remainder > half + 0.1 s
    segs = P.split_waveform(wave)
    assert segs.shape == (2, SEG) and segs.dtype == np.float32
    np.testing.assert_array_equal(segs.reshape(-1)[: wave.size], wave)
    assert np.all(segs[1, wave.size - SEG :] == 0)

    short_tail = rng.uniform(-1, 1, 2 * SEG + 1000).astype(np.float32)
    segs = P.split_waveform(short_tail)
    assert segs.shape == (2, SEG)
    np.testing.assert_array_equal(segs.reshape(-1), short_tail[: 2 * SEG])
    assert P.split_waveform(np.zeros(0, np.float32)).shape == (0, SEG)


def test_split_waveform_resamples_and_validates() -> None:
    wave = np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440).astype(np.float32)  # 1 s at 8 kHz
    segs = P.split_waveform(wave, sr=8000)
    assert segs.shape == (1, SEG)
    assert np.abs(segs[0, :16000]).max() > 0.5 and np.all(segs[0, 16010:] == 0)
    with pytest.raises(ValueError, match="mono"):
        P.split_waveform(np.zeros((2, 100), np.float32))
    with pytest.raises(TypeError, match="float"):
        P.split_waveform(np.zeros(100, np.int16))
    with pytest.raises(ValueError, match="NaN"):
        P.split_waveform(np.full(100, np.nan, np.float32))


# ---- audio: spectrograms --------------------------------------------------------------------------


def _test_segment() -> np.ndarray:
    rng = np.random.default_rng(42)
    t = np.arange(SEG) / 16000
    y = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(SEG)
    y[40000:] = 0.0  # digital silence at the end -> zero mask there
    return y.astype(np.float32)


def test_log_mel_matches_librosa() -> None:
    librosa = pytest.importorskip("librosa", reason="librosa is only an optional reference for the log-mel")
    import scipy.signal

    y = _test_segment()
    # Exactly the official call (window passed as scipy's callable -> symmetric Hann).
    ref = librosa.feature.melspectrogram(
        y=y,
        sr=16000,
        n_fft=1024,
        hop_length=256,
        window=scipy.signal.windows.hann,
        n_mels=128,
        fmin=0.0,
        fmax=8000.0,
        center=True,
        pad_mode="reflect",
    )
    mel = P.mel_spectrogram(y)
    assert mel.shape == ref.shape == (128, 256)
    np.testing.assert_allclose(mel, ref, rtol=1e-4, atol=1e-9)
    ref_mask = ref.T != 0
    ref_log = np.where(ref_mask, np.log(np.clip(ref.T, 1e-5, 1e5)), 0.0)
    logmel = P.log_mel_spectrogram(y)
    assert logmel.shape == (256, 128) and logmel.dtype == np.float32
    np.testing.assert_array_equal(logmel != 0, ref_mask)
    np.testing.assert_allclose(logmel, ref_log, atol=1e-4)
    np.testing.assert_allclose(
        P._MEL_BASIS, librosa.filters.mel(sr=16000, n_fft=1024, n_mels=128, fmax=8000.0), atol=1e-7
    )
    # librosa's default periodic 'hann' is measurably different: the window choice is pinned.
    periodic = librosa.feature.melspectrogram(
        y=y,
        sr=16000,
        n_fft=1024,
        hop_length=256,
        window="hann",
        n_mels=128,
        fmin=0.0,
        fmax=8000.0,
        center=True,
        pad_mode="reflect",
    )
    assert np.abs(np.log(periodic + 1e-5) - np.log(mel + 1e-5)).max() > 1e-3


def test_log_mel_post_processing_clip_and_mask() -> None:
    mel = np.array([[0.0, 1e-8, 1.0, 1e6]], dtype=np.float32)  # [1 mel, 4 time]
    logmel, mask = P.log_mel_from_mel(mel)
    assert logmel.shape == (4, 1)
    np.testing.assert_array_equal(mask[:, 0], [False, True, True, True])
    np.testing.assert_allclose(logmel[:, 0], [0.0, np.log(1e-5), 0.0, np.log(1e5)], rtol=1e-6)


def test_silence_gives_zero_mask() -> None:
    silent = np.zeros(SEG, np.float32)
    assert not np.any(P.log_mel_spectrogram(silent))
    inp = P.preprocess_audio_input(silent)
    assert inp.spectrogram.shape == (256, 128, 1) and inp.mask.shape == (16, 8)
    assert not inp.mask.any()
    np.testing.assert_allclose(inp.spectrogram, 4.26 / 9.14, rtol=1e-6)  # normalised zeros
    tgt = P.preprocess_audio_target(silent)
    assert tgt.spectrogram.shape == (256, 128, 1) and tgt.mask.shape == (256, 128) and not tgt.mask.any()


def test_audio_input_patch_mask_follows_content() -> None:
    inp = P.preprocess_audio_input(_test_segment())
    # Sound up to sample 40000 ~ frame 156: time patches 0..8 valid, the last ones silent.
    assert inp.mask[:9].all() and not inp.mask[-5:].any()
    logmel = P.log_mel_spectrogram(_test_segment())
    np.testing.assert_allclose(inp.spectrogram[..., 0], (logmel + 4.26) / 9.14, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="65280"):
        P.preprocess_audio_input(np.zeros(1000, np.float32))


def test_audio_normalisation_inverses() -> None:
    x = np.linspace(-11.5, 11.5, 17, dtype=np.float32)
    np.testing.assert_allclose(P.normalize_audio_input(x), (x + 4.26) / 9.14, rtol=1e-6)
    np.testing.assert_allclose(P.normalize_audio_target(x), (x + 5.0945) / 3.8312, rtol=1e-6)
    np.testing.assert_allclose(P.denormalize_audio_input(P.normalize_audio_input(x)), x, atol=1e-5)
    np.testing.assert_allclose(P.denormalize_audio_target(P.normalize_audio_target(x)), x, atol=1e-5)
