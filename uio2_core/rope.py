"""Rotary position embeddings exactly as UIO2 uses them (reference section 4.2, 3.7).

Tables are [..., head_dim] with interleaved (cos a_j, sin a_j) pairs; they travel with the
tokens, so every attention (self and cross) can apply the right positions to q and k.
1-D tables for text, 2-D tables (first half of the pairs: row, second half: column) for
images, spectrograms, histories and image/audio targets.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _table_from_angles(angles: np.ndarray | jax.Array) -> jax.Array:
    """[..., D/2] angles -> [..., D] interleaved (cos, sin) table, float32."""
    angles = jnp.asarray(angles, jnp.float32)
    return jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1).reshape(*angles.shape[:-1], -1)


def rope_table_1d(positions: jax.Array | np.ndarray, head_dim: int, base: float = 10000.0) -> jax.Array:
    """theta_j = base^(-2j/D), angle = p * theta_j, j < D/2."""
    if head_dim % 2:
        raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
    inv = base ** (-np.arange(0, head_dim // 2, dtype=np.float64) * 2.0 / head_dim)
    angles = jnp.asarray(positions, jnp.float32)[..., None] * jnp.asarray(inv, jnp.float32)
    return _table_from_angles(angles)


def rope_table_2d(
    rows: jax.Array | np.ndarray, cols: jax.Array | np.ndarray, head_dim: int, base: float = 10000.0
) -> jax.Array:
    """theta_j = base^(-4j/D), j < D/4; angles = [row * theta, col * theta] (D/2 angles)."""
    if head_dim % 4:
        raise ValueError(f"head_dim must be a multiple of 4 for 2-D RoPE, got {head_dim}")
    quarter = head_dim // 4
    inv = jnp.asarray(base ** (-np.arange(quarter, dtype=np.float64) * 4.0 / head_dim), jnp.float32)
    rows = jnp.asarray(rows, jnp.float32)[..., None] * inv
    cols = jnp.asarray(cols, jnp.float32)[..., None] * inv
    return _table_from_angles(jnp.concatenate([rows, cols], axis=-1))


def grid_coordinates(height: int, width: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Row-major (row, col) coordinates of a height x width grid, multiplied by `scale`."""
    r, c = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return r.reshape(-1) * scale, c.reshape(-1) * scale


def grid_table(
    height: int, width: int, head_dim: int, scale: float = 1.0, base: float = 10000.0
) -> jax.Array:
    """2-D table of a row-major grid: [height * width, head_dim]."""
    r, c = grid_coordinates(height, width, scale)
    return rope_table_2d(r, c, head_dim, base)


def audio_target_table(
    num_tokens: int, grid: tuple[int, int], head_dim: int, base: float = 10000.0
) -> jax.Array:
    """The released audio-target quirk (reference 5.3): the table is built on the (mel, time)
    patch grid, but token t of the *time-major* sequence takes row t // cols, col t % cols.
    So it is a plain row-major grid table indexed by token index; kept to match the weights."""
    rows, cols = grid
    if num_tokens > rows * cols:
        raise ValueError(f"audio target has {num_tokens} tokens but the grid holds {rows * cols}")
    return grid_table(rows, cols, head_dim, base=base)[:num_tokens]


def apply_rope(x: jax.Array, table: jax.Array) -> jax.Array:
    """Rotate adjacent pairs (x_2j, x_2j+1) of x [B, L, H, D] by a [B, L, D] (or [L, D]) table.

    Computed in float32 and cast back (LLaMA complex-pair layout, not HF's rotate_half).
    """
    dtype = x.dtype
    if table.ndim == 2:
        table = table[None]
    xf = x.astype(jnp.float32)
    x0, x1 = xf[..., 0::2], xf[..., 1::2]
    cos = table[:, :, None, 0::2].astype(jnp.float32)
    sin = table[:, :, None, 1::2].astype(jnp.float32)
    out = jnp.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], axis=-1)
    return out.reshape(x.shape).astype(dtype)
