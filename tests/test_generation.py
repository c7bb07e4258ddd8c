"""Generation targets: VQ-GAN round trips and token orders, vocoders, and image/audio generation to files."""

from __future__ import annotations

import wave

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from uio2_core.audio_vqgan import mel_major_to_time_major, time_major_to_mel_major
from uio2_core.checkpoints.materialize import load_from_source
from uio2_core.checkpoints.synthetic import random_state_dict
from uio2_core.config import get_config
from uio2_core.generation import (
    generate_audio,
    generate_images,
    spectrogram_to_waveform,
    tokens_to_images,
    write_wav,
)
from uio2_core.griffin_lim import griffin_lim
from uio2_core.hifigan import HiFiGAN, fold_weight_norm, generator_shapes
from uio2_core.preprocessing import AUDIO_SEGMENT_SAMPLES, mel_spectrogram


class _Source:
    def __init__(self, tensors):
        self.name, self.tensors = "memory", tensors

    def shapes(self):
        return {k: v.shape for k, v in self.tensors.items()}

    def dtype(self, key):
        return self.tensors[key].dtype

    def read(self, key):
        return self.tensors[key]

    def release(self, key):
        pass

    def close(self):
        pass


@pytest.fixture(scope="module")
def model():
    cfg = get_config("tiny")
    return load_from_source(_Source(random_state_dict(cfg, seed=4)), cfg, with_vqgan=True)


def test_image_vqgan_round_trip_shape_range_and_row_major_order(model):
    vq = model.target_embedders.image.vqgan
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)), jnp.float32)
    ids = vq.encode_to_ids(x)
    g = vq.cfg.grid
    assert ids.shape == (2, g * g) and ids.dtype == jnp.int32
    assert int(ids.min()) >= 0 and int(ids.max()) < vq.cfg.n_embed
    grid_ids = vq.quantize(vq.encode_latents(x))  # [2, g, g]
    np.testing.assert_array_equal(np.asarray(ids).reshape(2, g, g), np.asarray(grid_ids))
    images = vq.decode_ids(ids)
    assert images.shape == x.shape and float(images.min()) >= -1 and float(images.max()) <= 1
    rgb = tokens_to_images(model, vq.tokens_from_ids(ids))
    assert rgb.shape == x.shape and rgb.min() >= 0 and rgb.max() <= 1
    np.testing.assert_allclose(
        rgb, np.clip((np.asarray(vq.decode_ids(ids, clip=False)) + 1) / 2, 0, 1), atol=1e-6
    )


def test_audio_tokens_are_time_major():
    ids = jnp.arange(16 * 32)[None]  # mel-major: id = mel * 32 + time
    tm = np.asarray(mel_major_to_time_major(ids, (16, 32)))[0]
    t, m = 5, 11
    assert tm[t * 16 + m] == m * 32 + t
    np.testing.assert_array_equal(np.asarray(time_major_to_mel_major(jnp.asarray(tm)[None], (16, 32))), ids)


def test_audio_vqgan_round_trip(model):
    vq = model.target_embedders.audio.vqgan
    spec = jnp.asarray(np.random.default_rng(1).normal(size=(1, 128, 256, 1)), jnp.float32)
    ids = vq.encode_to_ids(spec)
    assert ids.shape == (1, 512) and int(ids.max()) < vq.cfg.n_embed
    mel_major = np.asarray(vq.quantize(vq.encode_latents(spec)))
    np.testing.assert_array_equal(np.asarray(ids), np.asarray(mel_major_to_time_major(mel_major, (16, 32))))
    out = vq.decode_ids(ids)
    assert out.shape == (1, 128, 256, 1) and out.dtype == jnp.float32 and bool(jnp.isfinite(out).all())


def test_griffin_lim_reconstructs_the_mel_spectrogram():
    t = np.arange(AUDIO_SEGMENT_SAMPLES) / 16000
    wave_in = 0.3 * np.sin(2 * np.pi * (300 + 400 * t) * t) + 0.1 * np.sin(2 * np.pi * 2000 * t)
    mel = mel_spectrogram(wave_in)
    out = griffin_lim(mel, n_iter=32)
    assert out.shape == (AUDIO_SEGMENT_SAMPLES,) and out.dtype == np.float32
    rebuilt = mel_spectrogram(out)
    assert np.corrcoef(mel.ravel(), rebuilt.ravel())[0, 1] > 0.95
    floor = 1e-2 * mel.max()
    a, b = np.log(mel + floor), np.log(rebuilt + floor)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    noise = mel_spectrogram(np.random.default_rng(0).normal(0, 0.1, AUDIO_SEGMENT_SAMPLES))
    assert np.abs(a - b).mean() < 0.4 * np.abs(a - np.log(noise + floor)).mean()


def test_weight_norm_folding():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(4, 3, 5)).astype(np.float32)
    g = rng.uniform(1, 2, size=(4, 1, 1)).astype(np.float32)
    out = fold_weight_norm({"a.weight_g": g, "a.weight_v": v, "a.bias": np.zeros(4, np.float32)})
    assert set(out) == {"a.weight", "a.bias"}
    np.testing.assert_allclose(np.linalg.norm(out["a.weight"].reshape(4, -1), axis=1), g.ravel(), rtol=1e-5)


def test_hifigan_matches_a_torch_reference():
    torch = pytest.importorskip(
        "torch", reason="the reference forward pass uses torch (pip install -e .[torch])"
    )
    import torch.nn.functional as F

    voc = HiFiGAN.random(seed=0)
    mel = np.random.default_rng(0).normal(-5, 2, (1, 128, 12)).astype(np.float32)
    ours = voc(mel)
    assert ours.shape == (1, 12 * 256) and np.abs(ours).max() <= 1
    p = {k: torch.from_numpy(np.array(v)) for k, v in voc.params.items()}
    c = voc.cfg
    x = F.conv1d(torch.from_numpy(mel), p["conv_pre.weight"], p["conv_pre.bias"], padding=3)
    for i, (u, k) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes, strict=True)):
        x = F.conv_transpose1d(
            F.leaky_relu(x, 0.1), p[f"ups.{i}.weight"], p[f"ups.{i}.bias"], u, (k - u) // 2
        )
        total = 0
        for j, (rk, dil) in enumerate(zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes, strict=True)):
            h = x
            for n, d in enumerate(dil):
                w, b = (
                    p[f"resblocks.{i * 3 + j}.convs.{n}.weight"],
                    p[f"resblocks.{i * 3 + j}.convs.{n}.bias"],
                )
                h = h + F.conv1d(F.leaky_relu(h, 0.1), w, b, dilation=d, padding=(rk * d - d) // 2)
            total = total + h
        x = total / 3
    ref = torch.tanh(F.conv1d(F.leaky_relu(x), p["conv_post.weight"], p["conv_post.bias"], padding=3))[:, 0]
    np.testing.assert_allclose(ours, ref.numpy(), atol=2e-5)


def test_hifigan_rejects_incomplete_weights():
    params = {k: np.zeros(s, np.float32) for k, s in generator_shapes().items()}
    del params["ups.1.weight"]
    with pytest.raises(ValueError, match=r"ups\.1\.weight"):
        HiFiGAN(params)


def test_image_generation_with_guidance_writes_pngs(tmp_path, model):
    rng = np.random.default_rng(0)
    batch = {"text": jnp.asarray(rng.integers(3, 1000, (2, 5)), jnp.int32)}
    negative = {"text": jnp.asarray(rng.integers(3, 1000, (2, 3)), jnp.int32)}
    paths = generate_images(
        model, batch, tmp_path, rng=jax.random.key(0), negative_batch=negative, guidance_scale=10.0
    )
    assert len(paths) == 2
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size == (64, 64) and im.mode == "RGB"


def test_audio_generation_writes_wavs(tmp_path, model):
    batch = {"text": jnp.asarray([[5, 6, 7, 1]], jnp.int32)}
    paths = generate_audio(model, batch, tmp_path, rng=jax.random.key(1))
    with wave.open(str(paths[0])) as f:
        assert f.getframerate() == 16000 and f.getnchannels() == 1 and f.getsampwidth() == 2
        assert f.getnframes() == AUDIO_SEGMENT_SAMPLES


def test_vocoder_choice_and_wav_clipping(tmp_path):
    spec = np.random.default_rng(0).normal(size=(128, 4)).astype(np.float32)
    assert spectrogram_to_waveform(spec, HiFiGAN.random()).shape == (4 * 256,)
    assert spectrogram_to_waveform(spec).shape == (3 * 256,)
    write_wav(tmp_path / "loud.wav", np.array([0.0, 4.0, -2.0]))
    with wave.open(str(tmp_path / "loud.wav")) as f:
        pcm = np.frombuffer(f.readframes(3), "<i2")
    np.testing.assert_array_equal(pcm, [0, 32767, -16384])


def test_generation_without_vqgan_says_how_to_fix(model):
    from uio2_core.checkpoints.materialize import load_from_source as load

    cfg = get_config("tiny")
    pruned = load(_Source(random_state_dict(cfg, seed=4)), cfg, with_vqgan=False)
    with pytest.raises(ValueError, match="with_vqgan=True"):
        tokens_to_images(pruned, jnp.zeros((1, 64), jnp.int32))
