"""Backbone building blocks: RMSNorm, bias-free linears, gated MLP, attention with QK-norm and RoPE.

Names of attributes follow the official parameter schema (`query`, `key`, `value`, `out`,
`query_norm`, `key_norm`, `wi_0`, `wi_1`, `wo`, `scale`), so checkpoint import is a renaming.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from uio2_core.rope import apply_rope

NEG_INF = -1e10  # the additive mask value of the official code
# attention dots on heads-first operands [B, H, L, D] (transposed first); False: the heads in the middle
# ([B, L, H, D] straight into the einsums), as before, which XLA's CPU dots ran at under half the speed
# (kept so that benchmarks/decode.py measures the difference in one run; the results are the same)
ATTENTION_HEADS_FIRST = True


def dot_attention(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array | None, *, kv: str = "bkhd",
                  scale: jax.Array | None = None) -> jax.Array:  # fmt: skip
    """softmax(q k^T * scale + bias) v for q [B, Lq, H, D] and keys/values laid out as `kv` (einsum
    letters: "bkhd", or a decode cache's "bhdk"); -> [B, Lq, H, D]. The weights take v's dtype. With
    ATTENTION_HEADS_FIRST, [B, L, H, D] operands are transposed to [B, H, L, D] for the dots, which XLA's
    CPU backend runs much faster than with the heads between the other axes. One body for the backbone,
    perceiver and ViT attention."""
    if kv == "bkhd" and ATTENTION_HEADS_FIRST:
        q, k, v = (jnp.swapaxes(t, 1, 2) for t in (q, k, v))
        q_axes, kv = "bhqd", "bhkd"
    else:
        q_axes = "bqhd"
    logits = jnp.einsum(f"{q_axes},{kv}->bhqk", q, k)
    if scale is not None:
        logits = logits * scale
    if bias is not None:
        logits = logits + bias
    out = jnp.einsum(f"bhqk,{kv}->{q_axes}", jax.nn.softmax(logits, axis=-1).astype(v.dtype), v)
    return jnp.swapaxes(out, 1, 2) if q_axes == "bhqd" else out


ATTN_KERNEL_INIT = nnx.initializers.variance_scaling(1.0, "fan_in", "normal")
MLP_KERNEL_INIT = nnx.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


class RMSNorm(nnx.Module):
    """T5 RMSNorm: no mean subtraction, no bias, statistics in float32."""

    def __init__(self, dim: int, eps: float = 1e-6, *, param_dtype=jnp.float32, rngs: nnx.Rngs | None = None):
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((dim,), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        xf = x.astype(jnp.float32)
        y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return (y * self.scale[...].astype(jnp.float32)).astype(x.dtype)


def dense(
    in_features: int,
    out_features: int,
    *,
    rngs: nnx.Rngs,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    kernel_init=ATTN_KERNEL_INIT,
) -> nnx.Linear:
    """A bias-free linear layer (kernel [in, out])."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=False,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=kernel_init,
        rngs=rngs,
    )


class GatedMLP(nnx.Module):
    """silu(x W_i0) * (x W_i1) -> W_o (the T5 v1.1 gated-SiLU MLP)."""

    def __init__(
        self, d_model: int, mlp_dim: int, *, rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32
    ):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype, kernel_init=MLP_KERNEL_INIT)
        self.wi_0 = dense(d_model, mlp_dim, **kw)
        self.wi_1 = dense(d_model, mlp_dim, **kw)
        self.wo = dense(mlp_dim, d_model, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.wo(jax.nn.silu(self.wi_0(x)) * self.wi_1(x))


class GeluMLP(nnx.Module):
    """wi -> GELU -> wo, no biases (perceiver resampler).

    `approximate=True` is tanh GELU, as the original JAX code (flax `nn.gelu` default) that trained the
    released weights; False is the exact erf GELU of the official PyTorch port.
    """

    def __init__(
        self,
        d_model: int,
        mlp_dim: int,
        *,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        approximate: bool = True,
    ):
        self.approximate = approximate
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype, kernel_init=MLP_KERNEL_INIT)
        self.wi = dense(d_model, mlp_dim, **kw)
        self.wo = dense(mlp_dim, d_model, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.wo(jax.nn.gelu(self.wi(x), approximate=self.approximate))


class PackedDense:
    """A bias-free linear over a transposed kernel [out, in] (`decoding.step_weights`), optionally one
    part of several linears packed into one kernel (`part` of `parts` equal slices of the output): the
    parts called on the same input share one product, computed at the first call. For decode steps on
    XLA's CPU backend, whose one-row products read a transposed, wider kernel faster (same sums)."""

    def __init__(self, kernel_t: jax.Array, part: int = 0, parts: int = 1, shared: dict | None = None):
        self.kernel_t, self.part, self.parts = kernel_t, part, parts
        self.shared = {} if shared is None else shared  # the last input and its product, per packed kernel

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.shared.get("x") is not x:
            y = jnp.einsum("...i,oi->...o", x.astype(self.kernel_t.dtype), self.kernel_t)
            self.shared.update(x=x, y=y)
        y = self.shared["y"]
        return jnp.split(y, self.parts, axis=-1)[self.part] if self.parts > 1 else y


def to_cache_layout(x: jax.Array) -> jax.Array:
    """Keys or values [B, L, H, D] -> [B, H, D, L], the layout decode caches keep them in."""
    return jnp.transpose(x, (0, 2, 3, 1))


def mask_to_bias(mask: jax.Array | None) -> jax.Array | None:
    """Boolean [B, 1|H, Lq, Lk] mask -> additive float32 bias (0 or -1e10)."""
    if mask is None:
        return None
    return jnp.where(mask, 0.0, NEG_INF).astype(jnp.float32)


class MultiHeadAttention(nnx.Module):
    """Attention with optional QK-RMSNorm (before RoPE) or scaled-cosine logits.

    Split into `project_kv` and `attend` so decoders can compute cross-attention keys and
    values once per encoding and keep self-attention keys/values in a cache.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        head_dim: int,
        *,
        qk_norm: bool = True,
        scaled_cosine: bool = False,
        kv_dim: int | None = None,
        norm_eps: float = 1e-6,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
    ):
        if qk_norm and scaled_cosine:
            raise ValueError("qk_norm and scaled_cosine are exclusive")
        kv_dim = kv_dim or d_model
        inner = num_heads * head_dim
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.num_heads, self.head_dim = num_heads, head_dim
        self.scaled_cosine = scaled_cosine
        self.query = dense(d_model, inner, **kw)
        self.key = dense(kv_dim, inner, **kw)
        self.value = dense(kv_dim, inner, **kw)
        self.out = dense(inner, d_model, **kw)
        if qk_norm:
            self.query_norm = RMSNorm(head_dim, norm_eps, param_dtype=param_dtype)
            self.key_norm = RMSNorm(head_dim, norm_eps, param_dtype=param_dtype)
        else:
            self.query_norm = self.key_norm = None
        if scaled_cosine:
            self.logit_scale = nnx.Param(jnp.full((num_heads,), math.log(10.0), param_dtype))

    def _split(self, x: jax.Array) -> jax.Array:
        return x.reshape(*x.shape[:-1], self.num_heads, self.head_dim)

    def project_q(self, x: jax.Array, rope: jax.Array | None) -> jax.Array:
        q = self._split(self.query(x))
        if self.query_norm is not None:
            q = self.query_norm(q)
        return apply_rope(q, rope) if rope is not None else q

    def project_kv(self, x: jax.Array, rope: jax.Array | None) -> tuple[jax.Array, jax.Array]:
        k = self._split(self.key(x))
        if self.key_norm is not None:
            k = self.key_norm(k)
        if rope is not None:
            k = apply_rope(k, rope)
        return k, self._split(self.value(x))

    def attend(self, q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array | None) -> jax.Array:
        """q [B, Lq, H, D], k/v [B, Lk, H, D], bias additive [B, 1|H, Lq, Lk]; fp32 logits and softmax.

        The dots run heads-first ([B, H, L, D], transposed here): XLA's CPU dots with the heads in the
        middle of the operands cost the large encoder about 30 ms more per layer (same results)."""
        return self._attend(q, k, v, bias, kv="bkhd", head_axis=3)

    def attend_cached(
        self, q: jax.Array, k_t: jax.Array, v_t: jax.Array, bias: jax.Array | None
    ) -> jax.Array:
        """`attend` with keys/values held as a decode cache holds them, [B, H, D, Lk] (see
        `to_cache_layout`): the layout XLA's CPU dot wants for one query against many keys, so a
        decode step reads the cache in place instead of transposing all of it first."""
        return self._attend(q, k_t, v_t, bias, kv="bhdk", head_axis=2)

    def _attend(self, q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array | None, *, kv: str,
                head_axis: int) -> jax.Array:  # fmt: skip
        """The attention of both layouts: `kv` names the key/value axes (einsum letters), `head_axis` is
        where D sits in them."""
        qf, kf = q.astype(jnp.float32), k.astype(jnp.float32)
        if self.scaled_cosine:
            qf = qf / jnp.maximum(jnp.linalg.norm(qf, axis=-1, keepdims=True), 1e-12)
            kf = kf / jnp.maximum(jnp.linalg.norm(kf, axis=head_axis, keepdims=True), 1e-12)
            scale = jnp.exp(jnp.minimum(self.logit_scale[...].astype(jnp.float32), math.log(100.0)))
            scale = scale[None, :, None, None]
        else:
            qf, scale = qf / math.sqrt(self.head_dim), None
        out = dot_attention(qf, kf, v, bias, kv=kv, scale=scale)
        return self.out(out.reshape(*out.shape[:2], -1))

    def __call__(
        self,
        x_q: jax.Array,
        x_kv: jax.Array,
        *,
        q_rope: jax.Array | None = None,
        k_rope: jax.Array | None = None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        k, v = self.project_kv(x_kv, k_rope)
        return self.attend(self.project_q(x_q, q_rope), k, v, mask_to_bias(mask))
