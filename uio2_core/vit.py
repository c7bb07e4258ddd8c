"""The frozen feature extractors: CLIP ViT-B/16 (images) and AST (audio spectrograms).

One class for both (they differ only by config): biased attention and MLP, LayerNorm,
learned position table, 11 of 12 blocks, and two outputs (last block, block 2) that the
input embedders concatenate. Attribute names follow the official schema
(`vision_transformer.{embedding, class_embedding | cls_token, dist_token,
positional_embedding, pre_ln, transformer.resblocks.N.{ln_1, attn, ln_2, mlp}}`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from uio2_core.config import ViTConfig
from uio2_core.layers import dot_attention, mask_to_bias


def patchify(x: jax.Array, patch: int) -> jax.Array:
    """[B, H, W, C] -> [B, (H/p)*(W/p), p*p*C], patches row-major, each flattened (dh, dw, c)."""
    b, h, w, c = x.shape
    if h % patch or w % patch:
        raise ValueError(f"input {h}x{w} is not divisible by the patch size {patch}")
    x = x.reshape(b, h // patch, patch, w // patch, patch, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // patch) * (w // patch), patch * patch * c)


class ViTAttention(nnx.Module):
    """Standard biased multi-head attention (names `query`, `key`, `value`, `out_proj`)."""

    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
        inner = cfg.num_heads * cfg.head_dim
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.query = nnx.Linear(cfg.width, inner, rngs=rngs)
        self.key = nnx.Linear(cfg.width, inner, rngs=rngs)
        self.value = nnx.Linear(cfg.width, inner, rngs=rngs)
        self.out_proj = nnx.Linear(inner, cfg.width, rngs=rngs)

    def __call__(self, x: jax.Array, bias: jax.Array | None) -> jax.Array:
        b, n, _ = x.shape
        split = lambda t: t.reshape(b, n, self.num_heads, self.head_dim)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        out = dot_attention(q, k, v, bias, scale=1 / jnp.sqrt(jnp.float32(self.head_dim)))
        return self.out_proj(out.reshape(b, n, -1))


class ViTMLP(nnx.Module):
    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
        self.approximate = cfg.gelu_approximate
        self.fc1 = nnx.Linear(cfg.width, cfg.mlp_dim, rngs=rngs)
        self.fc2 = nnx.Linear(cfg.mlp_dim, cfg.width, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=self.approximate))


class ResidualAttentionBlock(nnx.Module):
    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
        self.ln_1 = nnx.LayerNorm(cfg.width, epsilon=cfg.norm_eps, rngs=rngs)
        self.attn = ViTAttention(cfg, rngs=rngs)
        self.ln_2 = nnx.LayerNorm(cfg.width, epsilon=cfg.norm_eps, rngs=rngs)
        self.mlp = ViTMLP(cfg, rngs=rngs)

    def __call__(self, x: jax.Array, bias: jax.Array | None) -> jax.Array:
        x = x + self.attn(self.ln_1(x), bias)
        return x + self.mlp(self.ln_2(x))


class ViTTransformer(nnx.Module):
    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
        self.resblocks = nnx.List([ResidualAttentionBlock(cfg, rngs=rngs) for _ in range(cfg.num_layers)])


class VisionTransformer(nnx.Module):
    """Patch embedding + learned positions + blocks; returns (last block, block-2) token features."""

    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
        if cfg.num_layers < cfg.second_feature_block:
            raise ValueError(f"ViT needs at least {cfg.second_feature_block} blocks, got {cfg.num_layers}")
        self.cfg = cfg
        patch_dim = cfg.patch_size * cfg.patch_size * cfg.in_channels
        self.embedding = nnx.Linear(patch_dim, cfg.width, use_bias=cfg.patch_bias, rngs=rngs)
        init = nnx.initializers.normal(cfg.width**-0.5)
        if cfg.num_prefix_tokens == 1:
            self.class_embedding = nnx.Param(init(rngs.params(), (cfg.width,)))
        else:
            # (width,) as in the official port's AST (`cls_token`, `dist_token`), like `class_embedding`.
            self.cls_token = nnx.Param(init(rngs.params(), (cfg.width,)))
            self.dist_token = nnx.Param(init(rngs.params(), (cfg.width,)))
        self.positional_embedding = nnx.Param(init(rngs.params(), (cfg.num_pos, cfg.width)))
        self.pre_ln = nnx.LayerNorm(cfg.width, epsilon=cfg.norm_eps, rngs=rngs) if cfg.pre_ln else None
        self.transformer = ViTTransformer(cfg, rngs=rngs)

    def _prefix(self, batch: int) -> jax.Array:
        if self.cfg.num_prefix_tokens == 1:
            tok = self.class_embedding[...][None, None]
        else:
            tok = jnp.stack([self.cls_token[...], self.dist_token[...]])[None]
        return jnp.broadcast_to(tok, (batch, self.cfg.num_prefix_tokens, self.cfg.width))

    def patch_positions(self, grid: tuple[int, int]) -> jax.Array:
        """Position rows for a (rows, cols) patch grid, [rows*cols, width].

        Image ViT: the square pre-training grid is resized bicubically to the grid (as
        `jax.image.resize` in the original JAX code). AST: the table is indexed by mel-major
        (transposed) position ids, pos = (p mod cols) * rows + (p div cols).
        """
        cfg, table = self.cfg, self.positional_embedding[...]
        rows, cols = grid
        patches = table[cfg.num_prefix_tokens :]
        if cfg.transpose_pos_ids:
            p = jnp.arange(rows * cols)
            ids = (p % cols) * rows + (p // cols)
            if int(rows * cols) > patches.shape[0]:
                raise ValueError(f"AST position table has {patches.shape[0]} rows, needs {rows * cols}")
            return patches[ids]
        g = cfg.pretrain_grid
        square = patches.reshape(g, g, cfg.width)
        if (rows, cols) != (g, g):
            square = jax.image.resize(square, (rows, cols, cfg.width), "bicubic")
        return square.reshape(rows * cols, cfg.width)

    def __call__(
        self, patches: jax.Array, grid: tuple[int, int], mask: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """patches [B, N, p*p*C] (N = rows*cols), mask [B, N] -> two [B, N, width] features."""
        cfg = self.cfg
        b = patches.shape[0]
        x = self.embedding(patches.astype(jnp.float32)) + self.patch_positions(grid)[None]
        prefix_pos = self.positional_embedding[...][: cfg.num_prefix_tokens]
        x = jnp.concatenate([self._prefix(b) + prefix_pos[None], x], axis=1)
        if self.pre_ln is not None:
            x = self.pre_ln(x)
        bias = None
        if mask is not None:
            keys = jnp.concatenate([jnp.ones((b, cfg.num_prefix_tokens), bool), mask.astype(bool)], axis=1)
            bias = mask_to_bias(keys[:, None, None, :])
        features = []
        for block in self.transformer.resblocks:
            x = block(x, bias)
            features.append(x)
        n = cfg.num_prefix_tokens
        return features[-1][:, n:], features[cfg.second_feature_block - 1][:, n:]
