"""Image VQ-GAN and audio ViT-VQGAN target tokenizers: sizes, names, token order, quantizers.

Released sizes are only built abstractly (`nnx.eval_shape`); everything that runs uses `tiny`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from uio2_core.audio_vqgan import (
    AudioVQGAN,
    _patchify,
    mel_major_to_time_major,
    sincos_pos_embed_2d,
    time_major_to_mel_major,
)
from uio2_core.config import AudioVQGANConfig, VQGANConfig, get_config
from uio2_core.image_vqgan import (
    Downsample,
    ImageVQGAN,
    VectorQuantizer,
    count_params,
    ids_from_tokens,
    tokens_from_ids,
)

TINY = get_config("tiny")


def _flat_params(module: nnx.Module) -> dict[str, tuple[int, ...]]:
    return {".".join(map(str, k)): tuple(v.shape) for k, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}


def _brute_nearest_l2(z: np.ndarray, codes: np.ndarray) -> np.ndarray:
    z = z.reshape(-1, codes.shape[1]).astype(np.float64)
    d = ((z[:, None, :] - codes[None].astype(np.float64)) ** 2).sum(-1)
    return d.argmin(-1)


def _brute_nearest_cos(z: np.ndarray, codes: np.ndarray) -> np.ndarray:
    z = z.reshape(-1, codes.shape[1]).astype(np.float64)
    c = codes.astype(np.float64)
    sim = (z / np.linalg.norm(z, axis=-1, keepdims=True)) @ (c / np.linalg.norm(c, axis=-1, keepdims=True)).T
    return sim.argmax(-1)


# ---------------------------------------------------------------------------------------------
# Released sizes (abstract only)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_abstract() -> ImageVQGAN:
    return nnx.eval_shape(lambda: ImageVQGAN(VQGANConfig(), rngs=nnx.Rngs(0)))


@pytest.fixture(scope="module")
def audio_abstract() -> AudioVQGAN:
    return nnx.eval_shape(lambda: AudioVQGAN(AudioVQGANConfig(), rngs=nnx.Rngs(0)))


def test_image_vqgan_released_param_counts(image_abstract):
    # reference/uio2-architecture.md 1.3: enc 27.4M, codebook 16384*4, dec 40.3M, total 67.7M.
    m = image_abstract
    assert count_params(m.encoder) == pytest.approx(27.4e6, abs=0.05e6)
    assert count_params(m.quantize) == 16384 * 4
    assert count_params(m.decoder) == pytest.approx(40.3e6, abs=0.05e6)
    assert count_params(m.quant_conv) == count_params(m.post_quant_conv) == 4 * 4 + 4
    assert count_params(m) == pytest.approx(67.7e6, abs=0.05e6)


def test_audio_vqgan_released_param_counts(audio_abstract):
    # reference 1.3: enc 25.3M, codebook 8192*32 = 0.26M, dec 25.3M, total 50.8M.
    m = audio_abstract
    assert count_params(m.encoder) == pytest.approx(25.3e6, abs=0.05e6)
    assert count_params(m.quantize) == 8192 * 32
    assert count_params(m.decoder) == pytest.approx(25.3e6, abs=0.05e6)
    assert count_params(m) == pytest.approx(50.8e6, abs=0.05e6)


def test_image_vqgan_names_mirror_pytorch_schema(image_abstract):
    p = _flat_params(image_abstract)
    expected = {
        "encoder.conv_in.kernel": (3, 3, 3, 128),
        "encoder.down_0_block_0.norm1.scale": (128,),
        "encoder.down_1_block_0.nin_shortcut.kernel": (1, 1, 128, 256),
        "encoder.down_3_attn_1.q.kernel": (1, 1, 512, 512),
        "encoder.down_3_attn_1.proj_out.bias": (512,),
        "encoder.down_2_downsample.conv.kernel": (3, 3, 256, 256),
        "encoder.mid_attn_1.norm.bias": (512,),
        "encoder.conv_out.kernel": (3, 3, 512, 4),
        "quant_conv.kernel": (1, 1, 4, 4),
        "quantize.embedding.embedding": (16384, 4),
        "post_quant_conv.bias": (4,),
        "decoder.conv_in.kernel": (3, 3, 4, 512),
        "decoder.up_0_attn_2.k.kernel": (1, 1, 512, 512),
        "decoder.up_0_block_2.conv2.kernel": (3, 3, 512, 512),
        "decoder.up_0_upsample.conv.kernel": (3, 3, 512, 512),
        "decoder.up_1_block_0.nin_shortcut.kernel": (1, 1, 512, 256),
        "decoder.up_3_block_2.conv2.kernel": (3, 3, 128, 128),
        "decoder.conv_out.kernel": (3, 3, 128, 3),
    }
    for name, shape in expected.items():
        assert p.get(name) == shape, name
    # Attention only at resolution 32; no resampling past the ends; shortcut only when widths change.
    assert not any(
        k.startswith(("encoder.down_0_attn", "encoder.down_2_attn", "decoder.up_1_attn")) for k in p
    )
    assert not any(k.startswith(("encoder.down_3_downsample", "decoder.up_3_upsample")) for k in p)
    assert not any(k.startswith("encoder.down_0_block_0.nin_shortcut") for k in p)
    assert sum(k.startswith("decoder.up_2_block_") and k.endswith("conv1.kernel") for k in p) == 3


def test_audio_vqgan_names_mirror_pytorch_schema(audio_abstract):
    p = _flat_params(audio_abstract)
    expected = {
        "encoder.embedding.kernel": (64, 512),
        "encoder.embedding.bias": (512,),
        "encoder.transformer.encoderblock_7.ln_1.scale": (512,),
        "encoder.transformer.encoderblock_7.attn.query.kernel": (512, 512),
        "encoder.transformer.encoderblock_7.attn.out.kernel": (512, 512),
        "encoder.transformer.encoderblock_0.mlp.fc1.kernel": (512, 2048),
        "encoder.transformer.encoderblock_0.mlp.fc2.bias": (512,),
        "encoder.transformer.encoder_norm.bias": (512,),
        "encoder.encoder_proj.kernel": (512, 32),
        "encoder.encoder_norm.bias": (32,),
        "quantize.embedding.embedding": (8192, 32),
        "decoder.decoder_proj.kernel": (32, 512),
        "decoder.transformer.encoderblock_7.ln_2.bias": (512,),
        "decoder.transformer.encoder_norm.scale": (512,),
        "decoder.conv_transpose.kernel": (8, 8, 512, 1),
    }
    for name, shape in expected.items():
        assert p.get(name) == shape, name
    absent = [
        "encoder.encoder_norm.scale",
        "encoder.encoder_proj.bias",
        "decoder.decoder_proj.bias",
        "decoder.conv_transpose.bias",
        "encoder.transformer.encoderblock_0.attn.query.bias",
        "encoder.transformer.encoderblock_8.ln_1.scale",
    ]
    for name in absent:
        assert name not in p, name
    # The sin-cos position table is not state of any kind.
    assert not any("pos" in k for k in nnx.to_flat_state(nnx.state(audio_abstract)))


# ---------------------------------------------------------------------------------------------
# Image VQ-GAN, tiny
# ---------------------------------------------------------------------------------------------


class _Image:
    def __init__(self):
        self.cfg = TINY.image_vqgan
        # Jitted construction: one (persistently cached) compile instead of many eager init ops.
        self.model = nnx.jit(lambda: ImageVQGAN(self.cfg, rngs=nnx.Rngs(0)))()
        self.latents = nnx.jit(lambda m, x: m.encode_latents(x))
        self.encode = nnx.jit(lambda m, x: m.encode_to_ids(x))
        self.decode = nnx.jit(lambda m, i: m.decode_ids(i, clip=False))
        self.decode_clipped_and_rgb = nnx.jit(lambda m, i: (m.decode_ids(i), m.ids_to_rgb(i)))
        self.images = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3), minval=-1.0, maxval=1.0)


@pytest.fixture(scope="module")
def image() -> _Image:
    return _Image()


def test_image_encode_ids_are_row_major_nearest_codes(image):
    ids = image.encode(image.model, image.images)
    g = image.cfg.grid
    assert ids.shape == (2, g * g) and ids.dtype == jnp.int32
    assert int(ids.min()) >= 0 and int(ids.max()) < image.cfg.n_embed
    latents = np.asarray(image.latents(image.model, image.images))
    assert latents.shape == (2, g, g, image.cfg.embed_dim)
    expected = _brute_nearest_l2(latents, np.asarray(image.model.quantize.codebook)).reshape(2, g * g)
    np.testing.assert_array_equal(np.asarray(ids), expected)
    assert len(np.unique(np.asarray(ids))) > 1  # not a degenerate encoder


def test_image_decode_shapes_ranges_and_rgb(image):
    ids = jax.random.randint(jax.random.key(2), (2, image.cfg.grid**2), 0, image.cfg.n_embed)
    raw = image.decode(image.model, ids)
    assert raw.shape == (2, 64, 64, 3) and raw.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(raw)))
    clipped, rgb = image.decode_clipped_and_rgb(image.model, ids)
    assert float(clipped.min()) >= -1.0 and float(clipped.max()) <= 1.0
    np.testing.assert_allclose(clipped, jnp.clip(raw, -1, 1), atol=1e-5)
    assert rgb.shape == (2, 64, 64, 3)
    assert float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0
    np.testing.assert_allclose(rgb, np.clip((np.asarray(raw) + 1) / 2, 0, 1), atol=1e-5)


def test_image_decode_clips_out_of_range_ids(image):
    n = image.cfg.n_embed
    ids = jnp.tile(jnp.array([-5, 0, n - 1, n, 10**6, 3, 7, 1], jnp.int32), (1, 8))
    np.testing.assert_array_equal(
        image.decode(image.model, ids), image.decode(image.model, jnp.clip(ids, 0, n - 1))
    )


def test_image_quantizer_maps_each_code_to_itself(image):
    codebook = image.model.quantize.codebook
    ids = image.model.quantize(codebook.reshape(8, -1, codebook.shape[-1]))
    np.testing.assert_array_equal(np.asarray(ids).reshape(-1), np.arange(image.cfg.n_embed))


def test_image_quantizer_is_brute_force_nearest():
    q = VectorQuantizer(512, 4, rngs=nnx.Rngs(3))
    z = np.asarray(jax.random.normal(jax.random.key(4), (3, 5, 7, 4))) * 1.5
    ids = nnx.jit(lambda q, z: q(z))(q, jnp.asarray(z))
    assert ids.shape == (3, 5, 7) and ids.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(ids).reshape(-1), _brute_nearest_l2(z, np.asarray(q.codebook)))


def test_token_offset_helpers():
    ids = jnp.array([[0, 1, 511, 42]])
    np.testing.assert_array_equal(tokens_from_ids(ids), [[2, 3, 513, 44]])
    np.testing.assert_array_equal(ids_from_tokens(tokens_from_ids(ids), 512), ids)
    # BOS (0) and MASK (1) decode to code 0; anything past the codebook to its last code.
    np.testing.assert_array_equal(
        ids_from_tokens(jnp.array([0, 1, 2, 513, 514, 9999]), 512), [0, 0, 0, 511, 511, 511]
    )
    assert tokens_from_ids(ids).dtype == jnp.int32


def test_downsample_asymmetric_padding_odd_and_even_inputs():
    down = Downsample(2, rngs=nnx.Rngs(0))
    w = np.asarray(down.conv.kernel[...])
    b = np.asarray(down.conv.bias[...])
    for h, wd in [(7, 9), (8, 6)]:
        x = np.asarray(jax.random.normal(jax.random.key(h), (1, h, wd, 2)))
        y = np.asarray(down(jnp.asarray(x)))
        assert y.shape == (1, h // 2, wd // 2, 2)  # PyTorch: pad (0,1,0,1) then 3x3 stride 2
        xp = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        ref = np.zeros_like(y)
        for i in range(y.shape[1]):
            for j in range(y.shape[2]):
                ref[0, i, j] = np.einsum("abc,abco->o", xp[0, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3], w) + b
        np.testing.assert_allclose(y, ref, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Audio ViT-VQGAN, tiny
# ---------------------------------------------------------------------------------------------


def test_token_reorder_with_hand_built_grid():
    mel_major = jnp.arange(16 * 32)  # value = its own (mel, time) row-major index = mel * 32 + time
    tm = np.asarray(mel_major_to_time_major(mel_major))
    t = np.arange(512)  # token t of the time-major sequence = mel patch t % 16, time patch t // 16
    np.testing.assert_array_equal(tm, (t % 16) * 32 + t // 16)
    np.testing.assert_array_equal(tm[:3], [0, 32, 64])
    np.testing.assert_array_equal(time_major_to_mel_major(jnp.asarray(tm)), mel_major)
    # The other direction and batch dims: a time-major index grid goes to mel-major positions.
    time_major = jnp.tile(jnp.arange(512), (3, 1))
    mm = np.asarray(time_major_to_mel_major(time_major))
    assert mm.shape == (3, 512)
    for m, t in [(0, 0), (0, 1), (1, 0), (15, 31), (7, 20)]:
        assert mm[1, m * 32 + t] == t * 16 + m
    np.testing.assert_array_equal(mel_major_to_time_major(jnp.asarray(mm)), time_major)


def test_patchify_feature_order_is_dh_dw_c():
    mel, time = np.meshgrid(np.arange(128), np.arange(256), indexing="ij")
    spec = jnp.asarray((mel * 1000 + time).astype(np.float32))[None, :, :, None]
    patches = np.asarray(_patchify(spec, (8, 8)))
    assert patches.shape == (1, 512, 64)
    for p, f in [(0, 0), (0, 9), (33, 63), (511, 17)]:
        dh, dw = divmod(f, 8)
        assert patches[0, p, f] == (8 * (p // 32) + dh) * 1000 + 8 * (p % 32) + dw


def test_sincos_pos_embed_layout():
    table = sincos_pos_embed_2d(32, (16, 32))
    assert table.shape == (512, 32) and table.dtype == np.float32
    np.testing.assert_allclose(table[0], [0.0] * 8 + [1.0] * 8 + [0.0] * 8 + [1.0] * 8, atol=1e-7)
    # Token 1 = (h 0, w 1): the w-part comes first; token 32 = (h 1, w 0): the h-part second.
    assert table[1, 0] == pytest.approx(np.sin(1.0)) and table[1, 16] == 0.0
    assert table[32, 0] == 0.0 and table[32, 16] == pytest.approx(np.sin(1.0))
    assert table[1, 9] == pytest.approx(np.cos(1.0 / 10000 ** (1 / 8)), rel=1e-6)


class _Audio:
    def __init__(self):
        self.cfg = TINY.audio_vqgan
        self.model = nnx.jit(lambda: AudioVQGAN(self.cfg, rngs=nnx.Rngs(0)))()
        self.latents = nnx.jit(lambda m, x: m.encode_latents(x))
        self.encode = nnx.jit(lambda m, x: m.encode_to_ids(x))
        self.decode = nnx.jit(lambda m, i: m.decode_ids(i))
        self.spec = jax.random.normal(jax.random.key(5), (2, 128, 256, 1))


@pytest.fixture(scope="module")
def audio() -> _Audio:
    return _Audio()


def test_audio_encode_ids_time_major_nearest_codes(audio):
    ids = audio.encode(audio.model, audio.spec)
    assert ids.shape == (2, 512) and ids.dtype == jnp.int32
    assert int(ids.min()) >= 0 and int(ids.max()) < audio.cfg.n_embed
    latents = np.asarray(audio.latents(audio.model, audio.spec))
    assert latents.shape == (2, 512, audio.cfg.embed_dim)
    mel_major = _brute_nearest_cos(latents, np.asarray(audio.model.quantize.codebook)).reshape(2, 512)
    np.testing.assert_array_equal(np.asarray(time_major_to_mel_major(ids)), mel_major)
    assert len(np.unique(np.asarray(ids))) > 1


def test_audio_decode_shapes_and_token_order(audio):
    ids = jax.random.randint(jax.random.key(6), (2, 512), 0, audio.cfg.n_embed)
    spec = audio.decode(audio.model, ids)
    assert spec.shape == (2, 128, 256, 1) and spec.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(spec)))
    # decode_ids reads time-major ids: it equals the decoder on the mel-major code vectors.
    z = audio.model.quantize.lookup(time_major_to_mel_major(ids))
    np.testing.assert_allclose(nnx.jit(lambda m, z: m.decoder(z))(audio.model, z), spec, atol=1e-5)
    np.testing.assert_allclose(jnp.linalg.norm(z, axis=-1), 1.0, atol=1e-5)  # l2-normalised codes


def test_cosine_quantizer_scale_invariant_and_exact(audio):
    quantize = nnx.jit(lambda q, z: q(z))
    q = audio.model.quantize
    codes = q.codebook
    z = jax.random.normal(jax.random.key(7), (4, 100, audio.cfg.embed_dim))
    ids = np.asarray(quantize(q, z))
    np.testing.assert_array_equal(ids.reshape(-1), _brute_nearest_cos(np.asarray(z), np.asarray(codes)))
    scales = jax.random.uniform(jax.random.key(8), (4, 100, 1), minval=1e-3, maxval=1e3)
    for s in (1e-3, 0.5, 37.0, scales):
        np.testing.assert_array_equal(quantize(q, z * s), ids)
    own = np.arange(audio.cfg.n_embed)
    np.testing.assert_array_equal(quantize(q, codes), own)
    np.testing.assert_array_equal(quantize(q, codes * 123.0), own)


def test_conv_transpose_maps_each_token_to_its_own_patch(audio):
    dec = audio.model.decoder
    to_spec = nnx.jit(lambda d, h: d.tokens_to_spectrogram(h))
    h = jax.random.normal(jax.random.key(9), (1, 512, audio.cfg.width))
    base = np.asarray(to_spec(dec, h))
    assert base.shape == (1, 128, 256, 1)
    for t in (0, 17, 300, 511):  # time-major token t -> mel patch t % 16, time patch t // 16
        p = (t % 16) * 32 + t // 16  # its row in the decoder's mel-major hidden states
        changed = np.asarray(to_spec(dec, h.at[0, p].add(1.0)))
        diff = np.abs(changed - base)[0, :, :, 0] > 1e-6
        rows, cols = slice(8 * (t % 16), 8 * (t % 16) + 8), slice(8 * (t // 16), 8 * (t // 16) + 8)
        assert diff[rows, cols].all()
        diff[rows, cols] = False
        assert not diff.any()
    # Kernel convention (= the T5X checkpoint's flax ConvTranspose): patch pixel (a, b) uses K[7-a, 7-b].
    kernel = np.asarray(dec.conv_transpose.kernel[...])[..., 0]
    expected = np.einsum("c,abc->ab", np.asarray(h[0, 0]), kernel[::-1, ::-1])
    np.testing.assert_allclose(base[0, :8, :8, 0], expected, rtol=1e-4, atol=1e-5)


def test_audio_bfloat16_compute_keeps_float32_params():
    model = nnx.jit(lambda: AudioVQGAN(TINY.audio_vqgan, rngs=nnx.Rngs(0), dtype=jnp.bfloat16))()
    assert {v.dtype for v in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype(jnp.float32)}
    spec = jax.random.normal(jax.random.key(10), (1, 128, 256, 1))
    ids = nnx.jit(lambda m, x: m.encode_to_ids(x))(model, spec)
    assert ids.shape == (1, 512) and ids.dtype == jnp.int32
    out = nnx.jit(lambda m, i: m.decode_ids(i))(model, ids)
    assert out.shape == (1, 128, 256, 1) and out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))
