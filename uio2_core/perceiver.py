"""Perceiver resampler: compresses each history frame's features into a few latents.

Both layers are cross-attention from the learned latents to the (normed) frame features;
the latents are not concatenated to the keys. QK-RMSNorm (large, xl) or scaled-cosine
attention (xxl). Names: `latents`, `context_norm`, `layers_i.{pre_xattention_norm,
xattention, pre_mlp_norm, mlp}`, `perceiver_norm`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from uio2_core.config import PerceiverConfig
from uio2_core.layers import GeluMLP, MultiHeadAttention, RMSNorm, mask_to_bias


class PerceiverLayer(nnx.Module):
    def __init__(self, cfg: PerceiverConfig, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.pre_xattention_norm = RMSNorm(cfg.width, cfg.norm_eps)
        self.xattention = MultiHeadAttention(
            cfg.width,
            cfg.num_heads,
            cfg.head_dim,
            qk_norm=cfg.qk_norm,
            scaled_cosine=cfg.scaled_cosine,
            norm_eps=cfg.norm_eps,
            rngs=rngs,
            dtype=dtype,
        )
        self.pre_mlp_norm = RMSNorm(cfg.width, cfg.norm_eps)
        self.mlp = GeluMLP(cfg.width, cfg.mlp_dim, rngs=rngs, dtype=dtype, approximate=cfg.gelu == "tanh")

    def __call__(self, latents: jax.Array, context: jax.Array, bias: jax.Array | None) -> jax.Array:
        q = self.xattention.project_q(self.pre_xattention_norm(latents), None)
        k, v = self.xattention.project_kv(context, None)
        latents = latents + self.xattention.attend(q, k, v, bias)
        return latents + self.mlp(self.pre_mlp_norm(latents))


class Perceiver(nnx.Module):
    def __init__(self, cfg: PerceiverConfig, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.dtype = dtype
        init = nnx.initializers.variance_scaling(1.0, "fan_in", "normal")
        self.latents = nnx.Param(init(rngs.params(), (cfg.num_latents, cfg.width)))
        self.context_norm = RMSNorm(cfg.width, cfg.norm_eps)
        self.perceiver_norm = RMSNorm(cfg.width, cfg.norm_eps)
        self.num_layers = cfg.num_layers
        for i in range(cfg.num_layers):
            setattr(self, f"layers_{i}", PerceiverLayer(cfg, rngs=rngs, dtype=dtype))

    def __call__(self, context: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """context [N, P, width], mask [N, P] -> latents [N, num_latents, width]."""
        n = context.shape[0]
        context = self.context_norm(context.astype(self.dtype))
        x = jnp.broadcast_to(self.latents[...].astype(self.dtype), (n, *self.latents.shape))
        bias = mask_to_bias(mask.astype(bool)[:, None, None, :]) if mask is not None else None
        for i in range(self.num_layers):
            x = getattr(self, f"layers_{i}")(x, context, bias)
        return self.perceiver_norm(x)


class Resampler(nnx.Module):
    """Holder that mirrors the official `resampler.perceiver` nesting."""

    def __init__(self, cfg: PerceiverConfig, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.perceiver = Perceiver(cfg, rngs=rngs, dtype=dtype)

    def __call__(self, context: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        return self.perceiver(context, mask)
