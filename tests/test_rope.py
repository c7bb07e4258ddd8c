"""RoPE: attention scores depend only on relative position; cross-attention uses both position sets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uio2_core.rope import apply_rope, audio_target_table, grid_table, rope_table_1d, rope_table_2d


def _score(q, k, tq, tk):
    """q.k after rotating q by table tq and k by tk (single head, single position)."""
    rq = apply_rope(q[None, None, None], tq[None, None])
    rk = apply_rope(k[None, None, None], tk[None, None])
    return float(jnp.sum(rq * rk))


@pytest.fixture()
def qk():
    key_q, key_k = jax.random.split(jax.random.key(0))
    return jax.random.normal(key_q, (32,)), jax.random.normal(key_k, (32,))


def test_1d_score_depends_only_on_offset(qk):
    q, k = qk
    base = _score(q, k, rope_table_1d(jnp.array(7), 32), rope_table_1d(jnp.array(3), 32))
    for shift in (1, 10, 200):
        s = _score(q, k, rope_table_1d(jnp.array(7 + shift), 32), rope_table_1d(jnp.array(3 + shift), 32))
        assert s == pytest.approx(base, rel=1e-4, abs=1e-4)
    other = _score(q, k, rope_table_1d(jnp.array(8), 32), rope_table_1d(jnp.array(3), 32))
    assert abs(other - base) > 1e-3


def test_2d_score_depends_only_on_row_and_col_offsets(qk):
    q, k = qk
    t = lambda r, c: rope_table_2d(jnp.array(float(r)), jnp.array(float(c)), 32)  # noqa: E731
    base = _score(q, k, t(2, 5), t(4, 1))
    for dr, dc in ((1, 0), (0, 3), (6, 2)):
        assert _score(q, k, t(2 + dr, 5 + dc), t(4 + dr, 1 + dc)) == pytest.approx(base, rel=1e-4, abs=1e-4)
    # a change of only the row offset, or only the column offset, changes the score
    assert abs(_score(q, k, t(3, 5), t(4, 1)) - base) > 1e-3
    assert abs(_score(q, k, t(2, 6), t(4, 1)) - base) > 1e-3


def test_rotation_is_interleaved_pairs_and_norm_preserving():
    x = jnp.arange(8.0).reshape(1, 1, 1, 8) + 1
    table = rope_table_1d(jnp.array([1.0]), 8)  # [1, 8]
    out = np.asarray(apply_rope(x, table))[0, 0, 0]
    a = 1.0  # first pair angle = p * 10000^0
    assert out[0] == pytest.approx(1 * np.cos(a) - 2 * np.sin(a), rel=1e-5)
    assert out[1] == pytest.approx(2 * np.cos(a) + 1 * np.sin(a), rel=1e-5)
    assert np.linalg.norm(out) == pytest.approx(float(jnp.linalg.norm(x)), rel=1e-5)


def test_grid_tables_row_major_and_scaled():
    t = grid_table(3, 4, 16, scale=4 / 3)
    assert t.shape == (12, 16)
    # token 5 of a 3x4 grid is row 1, col 1
    np.testing.assert_allclose(t[5], rope_table_2d(jnp.array(4 / 3), jnp.array(4 / 3), 16), atol=1e-6)
    # the audio-target quirk: token t of the time-major sequence sits at (t // 32, t % 32) of a 16 x 32 grid
    a = audio_target_table(512, (16, 32), 16)
    np.testing.assert_allclose(a[37], rope_table_2d(jnp.array(1.0), jnp.array(5.0), 16), atol=1e-6)


def test_cross_attention_uses_decoder_positions_for_q_and_encoder_positions_for_k(tiny_model):
    attn = tiny_model.decoder.layers_0.encoder_decoder_attention
    hd = tiny_model.cfg.transformer.head_dim
    kx = jax.random.normal(jax.random.key(1), (1, 6, tiny_model.cfg.transformer.d_model))
    qx = jax.random.normal(jax.random.key(2), (1, 1, tiny_model.cfg.transformer.d_model))
    enc_pos = jnp.arange(6.0)

    def out(dec_pos, enc_shift):
        qt = rope_table_1d(jnp.array([dec_pos]), hd)[None]
        kt = rope_table_1d(enc_pos + enc_shift, hd)[None]
        return np.asarray(attn(qx, kx, q_rope=qt, k_rope=kt))

    ref = out(3.0, 0.0)
    np.testing.assert_allclose(out(10.0, 7.0), ref, atol=1e-4)  # shifting both: same
    assert np.abs(out(10.0, 0.0) - ref).max() > 1e-3  # decoder position matters for q
    assert np.abs(out(3.0, 7.0) - ref).max() > 1e-3  # encoder position matters for k
