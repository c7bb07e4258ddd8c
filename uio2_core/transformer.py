"""The encoder and decoder stacks, with a KV cache for incremental decoding.

Decoder cache: self-attention keys/values grow one position per step; cross-attention
keys/values are computed once from the encoder output (the official PyTorch port recomputes
them at every step, which is most of its decode time).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from uio2_core.config import TransformerConfig
from uio2_core.layers import GatedMLP, MultiHeadAttention, RMSNorm, mask_to_bias, to_cache_layout

Cache = list[dict[str, jax.Array]]

# decode caches hold keys/values as [B, H, D, positions], the layout a step's dot reads in place;
# False: [B, positions, H, D], as before, which XLA transposed whole at every step and layer
# (kept so that benchmarks/decode.py measures the difference in one run)
CACHE_LAYOUT_FOR_DOT = True


def _cache_layout(x: jax.Array) -> jax.Array:
    return to_cache_layout(x) if CACHE_LAYOUT_FOR_DOT else x


def _attention(t: TransformerConfig, rngs: nnx.Rngs, dtype, param_dtype) -> MultiHeadAttention:
    return MultiHeadAttention(
        t.d_model,
        t.num_heads,
        t.head_dim,
        qk_norm=t.qk_norm,
        norm_eps=t.norm_eps,
        rngs=rngs,
        dtype=dtype,
        param_dtype=param_dtype,
    )


def _split_rows(x: Any, rows: Any) -> Any:
    """x with its leading (row) axis split as `rows` (a jax Sharding) says, where that axis divides."""
    if rows is None or not isinstance(x, jax.Array) or x.ndim < 2:
        return x
    axes = rows.spec[0] if isinstance(rows.spec[0], tuple) else (rows.spec[0],)
    splits = math.prod(rows.mesh.shape[a] for a in axes if a is not None)
    return jax.lax.with_sharding_constraint(x, rows) if x.shape[0] % splits == 0 else x


def _run_layer(layer: nnx.Module, remat: bool, rows: Any, *args):
    """layer(*args); with `remat`, under nnx.remat: only the layer's inputs are kept for the backward
    pass and its insides are recomputed (activation checkpointing, set by the trainer's --remat).
    `rows` (the batch's sharding, or None) pins the layer's inputs and output to rows split over the
    mesh: without it XLA's partitioner, meeting weights split on their input dimension, may keep every
    activation whole (all rows) on every device and sum partial products instead (TrainConfig.pin_rows)."""
    args = tuple(_split_rows(a, rows) for a in args)
    out = layer(*args) if not remat else nnx.remat(lambda m, *a: m(*a))(layer, *args)
    return _split_rows(out, rows)


class EncoderLayer(nnx.Module):
    def __init__(self, t: TransformerConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32):
        self.pre_attention_norm = RMSNorm(t.d_model, t.norm_eps, param_dtype=param_dtype)
        self.attention = _attention(t, rngs, dtype, param_dtype)
        self.pre_mlp_norm = RMSNorm(t.d_model, t.norm_eps, param_dtype=param_dtype)
        self.mlp = GatedMLP(t.d_model, t.mlp_dim, rngs=rngs, dtype=dtype, param_dtype=param_dtype)

    def __call__(self, x: jax.Array, rope: jax.Array, bias: jax.Array | None) -> jax.Array:
        h = self.pre_attention_norm(x)
        k, v = self.attention.project_kv(h, rope)
        x = x + self.attention.attend(self.attention.project_q(h, rope), k, v, bias)
        return x + self.mlp(self.pre_mlp_norm(x))


class Encoder(nnx.Module):
    remat = False  # activation checkpointing per layer (training/trainer.py sets it)
    rows = None  # the batch's sharding, to pin layer inputs to (training/trainer.py, --pin-rows)

    def __init__(self, t: TransformerConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32):
        self.num_layers = t.num_encoder_layers
        for i in range(t.num_encoder_layers):
            setattr(self, f"layers_{i}", EncoderLayer(t, rngs=rngs, dtype=dtype, param_dtype=param_dtype))
        self.encoder_norm = RMSNorm(t.d_model, t.norm_eps, param_dtype=param_dtype)

    def __call__(self, x: jax.Array, rope: jax.Array, mask: jax.Array) -> jax.Array:
        """x [B, L, d], rope [B, L, Dh], mask [B, 1, L, L] bool -> [B, L, d]."""
        bias = mask_to_bias(mask)
        for i in range(self.num_layers):
            x = _run_layer(getattr(self, f"layers_{i}"), self.remat, self.rows, x, rope, bias)
        return self.encoder_norm(x)


class DecoderLayer(nnx.Module):
    def __init__(self, t: TransformerConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32):
        self.pre_self_attention_norm = RMSNorm(t.d_model, t.norm_eps, param_dtype=param_dtype)
        self.self_attention = _attention(t, rngs, dtype, param_dtype)
        self.pre_cross_attention_norm = RMSNorm(t.d_model, t.norm_eps, param_dtype=param_dtype)
        self.encoder_decoder_attention = _attention(t, rngs, dtype, param_dtype)
        self.pre_mlp_norm = RMSNorm(t.d_model, t.norm_eps, param_dtype=param_dtype)
        self.mlp = GatedMLP(t.d_model, t.mlp_dim, rngs=rngs, dtype=dtype, param_dtype=param_dtype)

    def _cross_and_mlp(
        self,
        x: jax.Array,
        rope: jax.Array,
        cross_k: jax.Array,
        cross_v: jax.Array,
        cross_bias: jax.Array | None,
        cached: bool = False,
    ) -> jax.Array:
        """`cached`: cross_k/cross_v in the cache layout [n, H, D, L] (else [n, L, H, D])."""
        h = self.pre_cross_attention_norm(x)
        attention = self.encoder_decoder_attention
        attend = attention.attend_cached if cached else attention.attend
        q = attention.project_q(h, rope)
        rows, n = x.shape[0], cross_k.shape[0]
        if rows != n:
            # beams share their row's cross keys/values: a row's k beams are k groups of queries
            # against the same keys (cross-attention has no mask between positions)
            g = rows // n
            q = q.reshape(n, g * q.shape[1], *q.shape[2:])
            out = attend(q, cross_k, cross_v, cross_bias)
            return self._mlp(x + out.reshape(rows, -1, out.shape[-1]))
        return self._mlp(x + attend(q, cross_k, cross_v, cross_bias))

    def _mlp(self, x: jax.Array) -> jax.Array:
        return x + self.mlp(self.pre_mlp_norm(x))

    def cross_kv(self, encoded: jax.Array, enc_rope: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Keys use the *encoder* positions; queries later use the decoder positions."""
        return self.encoder_decoder_attention.project_kv(encoded, enc_rope)

    def cached_cross_kv(self, encoded: jax.Array, enc_rope: jax.Array) -> tuple[jax.Array, jax.Array]:
        """`cross_kv` in the decode cache's layout [B, H, D, L] (transposed once per encoding)."""
        k, v = self.cross_kv(encoded, enc_rope)
        return _cache_layout(k), _cache_layout(v)

    def __call__(
        self,
        x: jax.Array,
        rope: jax.Array,
        self_bias: jax.Array | None,
        encoded: jax.Array,
        enc_rope: jax.Array,
        cross_bias: jax.Array | None,
    ) -> jax.Array:
        h = self.pre_self_attention_norm(x)
        k, v = self.self_attention.project_kv(h, rope)
        x = x + self.self_attention.attend(self.self_attention.project_q(h, rope), k, v, self_bias)
        ck, cv = self.cross_kv(encoded, enc_rope)
        return self._cross_and_mlp(x, rope, ck, cv, cross_bias)

    def step(
        self,
        x: jax.Array,
        rope: jax.Array,
        index: jax.Array,
        cache: dict[str, jax.Array],
        cross_bias: jax.Array | None,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """New positions index.. per row: x [B, T, d] (T = 1 when decoding token by token, more when
        feeding a forced run); writes k/v at index..index+T-1, position index+j attends to <= index+j.
        The cache holds keys/values as [B, H, D, positions] (`to_cache_layout`)."""
        h = self.pre_self_attention_norm(x)
        k_new, v_new = self.self_attention.project_kv(h, rope)
        k_new, v_new = _cache_layout(k_new), _cache_layout(v_new)
        axis = 3 if CACHE_LAYOUT_FOR_DOT else 1
        k = jax.lax.dynamic_update_slice_in_dim(cache["k"], k_new.astype(cache["k"].dtype), index, axis=axis)
        v = jax.lax.dynamic_update_slice_in_dim(cache["v"], v_new.astype(cache["v"].dtype), index, axis=axis)
        query_pos = index + jnp.arange(x.shape[1])[:, None]
        visible = (jnp.arange(k.shape[axis])[None, :] <= query_pos)[None, None]
        attention = self.self_attention
        attend = attention.attend_cached if CACHE_LAYOUT_FOR_DOT else attention.attend
        x = x + attend(attention.project_q(h, rope), k, v, mask_to_bias(visible))
        x = self._cross_and_mlp(
            x, rope, cache["cross_k"], cache["cross_v"], cross_bias, cached=CACHE_LAYOUT_FOR_DOT
        )
        return x, {**cache, "k": k, "v": v}


class Decoder(nnx.Module):
    remat = False  # activation checkpointing per layer (training/trainer.py sets it)
    rows = None  # the batch's sharding, to pin layer inputs to (training/trainer.py, --pin-rows)

    def __init__(self, t: TransformerConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32):
        self.num_layers = t.num_decoder_layers
        self.t = t
        for i in range(t.num_decoder_layers):
            setattr(self, f"layers_{i}", DecoderLayer(t, rngs=rngs, dtype=dtype, param_dtype=param_dtype))
        self.decoder_norm = RMSNorm(t.d_model, t.norm_eps, param_dtype=param_dtype)

    def layers(self) -> list[DecoderLayer]:
        return [getattr(self, f"layers_{i}") for i in range(self.num_layers)]

    def __call__(
        self,
        x: jax.Array,
        rope: jax.Array,
        self_mask: jax.Array,
        encoded: jax.Array,
        enc_rope: jax.Array,
        cross_mask: jax.Array,
    ) -> jax.Array:
        """Teacher-forced forward over the whole target sequence."""
        self_bias, cross_bias = mask_to_bias(self_mask), mask_to_bias(cross_mask)
        for layer in self.layers():
            x = _run_layer(layer, self.remat, self.rows, x, rope, self_bias, encoded, enc_rope, cross_bias)
        return self.decoder_norm(x)

    def init_cache(self, encoded: jax.Array, enc_rope: jax.Array, max_length: int, beams: int = 1) -> Cache:
        """Empty self-attention cache of `max_length` positions + cross keys/values, per layer.
        `beams`: self-attention rows per encoded row (beam search); the cross keys/values stay one
        per encoded row, shared by its beams."""
        b, t = encoded.shape[0] * beams, self.t
        h, d = t.num_heads, t.head_dim
        shape = (b, h, d, max_length) if CACHE_LAYOUT_FOR_DOT else (b, max_length, h, d)
        cache = []
        for layer in self.layers():
            ck, cv = layer.cached_cross_kv(encoded, enc_rope)
            cache.append(
                {
                    "k": jnp.zeros(shape, ck.dtype),
                    "v": jnp.zeros(shape, cv.dtype),
                    "cross_k": ck,
                    "cross_v": cv,
                }
            )
        return cache

    def step(
        self, x: jax.Array, rope: jax.Array, index: jax.Array, cache: Cache, cross_mask: jax.Array
    ) -> tuple[jax.Array, Cache]:
        cross_bias = mask_to_bias(cross_mask)
        new_cache: list[Any] = []
        for layer, layer_cache in zip(self.layers(), cache, strict=True):
            x, c = layer.step(x, rope, index, layer_cache, cross_bias)
            new_cache.append(c)
        return self.decoder_norm(x), new_cache
