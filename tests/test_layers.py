"""Building blocks: RMSNorm, scaled-cosine attention, perceiver masking, ViT features."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from uio2_core.config import PerceiverConfig
from uio2_core.layers import MultiHeadAttention, RMSNorm
from uio2_core.perceiver import Perceiver


def test_rmsnorm_matches_formula_in_float32_for_bfloat16_inputs():
    x = jax.random.normal(jax.random.key(0), (3, 16)) * 50
    norm = RMSNorm(16, 1e-6)
    norm.scale[...] = jnp.arange(16.0)
    expected = np.asarray(x) / np.sqrt((np.asarray(x) ** 2).mean(-1, keepdims=True) + 1e-6) * np.arange(16.0)
    np.testing.assert_allclose(norm(x), expected, rtol=1e-5)
    y = norm(x.astype(jnp.bfloat16))
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float32), expected, rtol=2e-2, atol=2e-2)


def _cosine_attention(scale: float) -> MultiHeadAttention:
    attn = MultiHeadAttention(8, 2, 4, qk_norm=False, scaled_cosine=True, rngs=nnx.Rngs(0))
    attn.logit_scale[...] = jnp.full((2,), scale)
    return attn


def test_scaled_cosine_attention_ignores_vector_norms_and_clamps_the_scale():
    attn = _cosine_attention(math.log(10.0))
    q = jax.random.normal(jax.random.key(1), (1, 3, 2, 4))
    k = jax.random.normal(jax.random.key(2), (1, 5, 2, 4))
    v = jax.random.normal(jax.random.key(3), (1, 5, 2, 4))
    ref = attn.attend(q, k, v, None)
    np.testing.assert_allclose(attn.attend(q * 7.0, k * 0.1, v, None), ref, atol=1e-5)
    # logit scale above ln 100 is clamped: ln 100 and ln 1000 give the same output, ln 10 does not
    hi, higher = _cosine_attention(math.log(100.0)), _cosine_attention(math.log(1000.0))
    for m in (hi, higher):
        for name in ("query", "key", "value", "out"):
            getattr(m, name).kernel[...] = getattr(attn, name).kernel[...]
    np.testing.assert_allclose(hi.attend(q, k, v, None), higher.attend(q, k, v, None), atol=1e-6)
    assert np.abs(np.asarray(hi.attend(q, k, v, None) - ref)).max() > 1e-4


def test_qk_norm_and_scaled_cosine_are_exclusive():
    with pytest.raises(ValueError, match="exclusive"):
        MultiHeadAttention(8, 2, 4, qk_norm=True, scaled_cosine=True, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("scaled_cosine", [False, True])
def test_perceiver_latents_ignore_masked_context(scaled_cosine):
    cfg = PerceiverConfig(num_latents=4, width=16, num_heads=2, head_dim=8, mlp_dim=32,
                          qk_norm=not scaled_cosine, scaled_cosine=scaled_cosine)  # fmt: skip
    perceiver = Perceiver(cfg, rngs=nnx.Rngs(0))
    ctx = jax.random.normal(jax.random.key(4), (2, 6, 16))
    mask = jnp.array([[1, 1, 1, 0, 0, 0]] * 2, bool)
    out = perceiver(ctx, mask)
    assert out.shape == (2, 4, 16)
    np.testing.assert_allclose(perceiver(ctx.at[:, 3:].set(100.0), mask), out, atol=1e-5)
    assert np.abs(np.asarray(perceiver(ctx.at[:, :1].set(100.0), mask) - out)).max() > 1e-4


def test_vit_returns_last_and_second_block_features_and_respects_key_mask(tiny_model):
    vit = tiny_model.input_embedders.image.vit
    cfg = vit.cfg
    patches = jax.random.normal(jax.random.key(5), (1, 16, cfg.patch_size**2 * 3))
    mask = jnp.array([[True] * 12 + [False] * 4])
    last, second = vit(patches, (4, 4), mask)
    assert last.shape == second.shape == (1, 16, cfg.width)
    assert np.abs(np.asarray(last - second)).max() > 1e-3
    last2, _ = vit(patches.at[:, 12:].set(5.0), (4, 4), mask)
    np.testing.assert_allclose(last2[:, :12], last[:, :12], atol=1e-5)


def test_vit_position_table_is_resized_for_other_grids(tiny_model):
    vit = tiny_model.input_embedders.image.vit
    g = vit.cfg.pretrain_grid
    same = vit.patch_positions((g, g))
    np.testing.assert_allclose(same, vit.positional_embedding[...][1:], atol=1e-6)
    assert vit.patch_positions((3, 3)).shape == (9, vit.cfg.width)


def test_ast_position_ids_are_mel_major(tiny_model):
    ast = tiny_model.input_embedders.audio.vit
    table = ast.positional_embedding[...][2:]
    pos = ast.patch_positions((16, 8))
    # patch p = time * 8 + mel takes row mel * 16 + time
    np.testing.assert_allclose(pos[1 * 8 + 3], table[3 * 16 + 1])


def test_heads_first_attention_equals_the_heads_in_the_middle_layout():
    """`dot_attention` transposes its operands heads-first for XLA's CPU dots; with the switch off it
    runs on [B, L, H, D] directly (what benchmarks/decode.py times beside it): same values either way."""
    import jax
    import numpy as np

    from uio2_core import layers

    q = jax.random.normal(jax.random.key(0), (2, 5, 3, 4))
    k, v = (jax.random.normal(jax.random.key(i), (2, 9, 3, 4)) for i in (1, 2))
    bias = jax.random.normal(jax.random.key(9), (2, 1, 5, 9))
    first = layers.dot_attention(q, k, v, bias, scale=0.5)
    layers.ATTENTION_HEADS_FIRST = False
    try:
        middle = layers.dot_attention(q, k, v, bias, scale=0.5)
    finally:
        layers.ATTENTION_HEADS_FIRST = True
    assert first.shape == (2, 5, 3, 4)
    np.testing.assert_allclose(np.asarray(first), np.asarray(middle), rtol=1e-5, atol=1e-6)
    weights = jax.nn.softmax(np.einsum("bqhd,bkhd->bhqk", q, k) * 0.5 + bias, axis=-1)
    np.testing.assert_allclose(np.asarray(first), np.einsum("bhqk,bkhd->bqhd", weights, v), atol=1e-5)
