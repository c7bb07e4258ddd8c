"""Image VQ-GAN target tokenizer (taming / LDM "vq-f8"), NHWC, float32.

Attribute names mirror the official PyTorch state-dict keys under `target_embedders.image.vqgan`
(reference/uio2-architecture.md sections 1.6, 1.7 rule 5, 5.2) so that the checkpoint importer
maps names mechanically: `encoder.down_{l}_block_{b}.conv1.kernel` <-> `...conv1.weight`, etc.
Leaf names are the Flax ones (`kernel`, `bias`, `scale`, `embedding`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from uio2_core.config import VQGANConfig

# Target vocabulary layout for VQ tokens: 0 = BOS, 1 = MASK, code c -> c + 2.
TOKEN_OFFSET = 2


def count_params(module_or_state: nnx.Module | nnx.State) -> int:
    """Number of scalars in the `nnx.Param`s of a module (works on `nnx.eval_shape` results too)."""
    state = module_or_state
    if isinstance(state, nnx.Module):
        state = nnx.state(state, nnx.Param)
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(state))


def tokens_from_ids(ids: jax.Array) -> jax.Array:
    """Code indices -> target-vocabulary tokens (shift past BOS and MASK)."""
    return jnp.asarray(ids, jnp.int32) + TOKEN_OFFSET


def ids_from_tokens(tokens: jax.Array, n_embed: int) -> jax.Array:
    """Target-vocabulary tokens -> code indices, clipped like the official decoder (BOS/MASK -> 0)."""
    return jnp.clip(jnp.asarray(tokens, jnp.int32) - TOKEN_OFFSET, 0, n_embed - 1)


def _conv(n_in: int, n_out: int, kernel: int, rngs: nnx.Rngs, **kw) -> nnx.Conv:
    """Conv with bias (taming convs all have one); 'SAME' = PyTorch padding k // 2 for odd kernels."""
    return nnx.Conv(n_in, n_out, (kernel, kernel), use_bias=True, rngs=rngs, **kw)


def _group_norm(channels: int, cfg: VQGANConfig, rngs: nnx.Rngs) -> nnx.GroupNorm:
    # Two-pass variance like torch.nn.GroupNorm, so imported weights reproduce PyTorch outputs closely.
    return nnx.GroupNorm(
        channels, num_groups=cfg.num_groups, epsilon=cfg.norm_eps, use_fast_variance=False, rngs=rngs
    )


class ResBlock(nnx.Module):
    """GN -> swish -> conv3 -> GN -> swish -> conv3, plus a 1x1 `nin_shortcut` when widths differ."""

    def __init__(self, n_in: int, n_out: int, cfg: VQGANConfig, *, rngs: nnx.Rngs):
        self.norm1 = _group_norm(n_in, cfg, rngs)
        self.conv1 = _conv(n_in, n_out, 3, rngs)
        self.norm2 = _group_norm(n_out, cfg, rngs)
        self.conv2 = _conv(n_out, n_out, 3, rngs)
        self.nin_shortcut = _conv(n_in, n_out, 1, rngs) if n_in != n_out else None

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv1(nnx.swish(self.norm1(x)))
        h = self.conv2(nnx.swish(self.norm2(h)))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nnx.Module):
    """Single-head self-attention over all pixels with 1x1-conv projections (taming AttnBlock)."""

    def __init__(self, channels: int, cfg: VQGANConfig, *, rngs: nnx.Rngs):
        self.norm = _group_norm(channels, cfg, rngs)
        self.q = _conv(channels, channels, 1, rngs)
        self.k = _conv(channels, channels, 1, rngs)
        self.v = _conv(channels, channels, 1, rngs)
        self.proj_out = _conv(channels, channels, 1, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        hn = self.norm(x)
        q = self.q(hn).reshape(b, h * w, c)
        k = self.k(hn).reshape(b, h * w, c)
        v = self.v(hn).reshape(b, h * w, c)
        weights = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k) * (c**-0.5), axis=-1)
        out = jnp.einsum("bqk,bkc->bqc", weights, v).reshape(b, h, w, c)
        return x + self.proj_out(out)


class Downsample(nnx.Module):
    """Conv3 stride 2 with PyTorch's explicit (0, 1) padding: output side = input side // 2.

    JAX 'SAME' agrees only for even sides (it would pad (1, 1) and give ceil(n / 2) for odd n).
    """

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.conv = _conv(channels, channels, 3, rngs, strides=(2, 2), padding=((0, 1), (0, 1)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x)


class Upsample(nnx.Module):
    """Nearest-neighbour x2 then conv3."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.conv = _conv(channels, channels, 3, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))


def _attn_levels(cfg: VQGANConfig) -> frozenset[int]:
    """Levels (index into ch_mult, 0 = full resolution) whose resolution is in attn_resolutions."""
    levels = range(len(cfg.ch_mult))
    return frozenset(lvl for lvl in levels if cfg.resolution // 2**lvl in cfg.attn_resolutions)


class Encoder(nnx.Module):
    """Image [B,H,W,3] -> latent [B,H/f,W/f,z_channels] (taming Encoder, double_z=False)."""

    def __init__(self, cfg: VQGANConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.attn_levels = _attn_levels(cfg)
        levels = len(cfg.ch_mult)
        in_mult = (1, *cfg.ch_mult)
        self.conv_in = _conv(cfg.in_channels, cfg.ch, 3, rngs)
        block_in = cfg.ch
        for lvl in range(levels):
            block_in = cfg.ch * in_mult[lvl]
            block_out = cfg.ch * cfg.ch_mult[lvl]
            for b in range(cfg.num_res_blocks):
                setattr(self, f"down_{lvl}_block_{b}", ResBlock(block_in, block_out, cfg, rngs=rngs))
                block_in = block_out
                if lvl in self.attn_levels:
                    setattr(self, f"down_{lvl}_attn_{b}", AttnBlock(block_in, cfg, rngs=rngs))
            if lvl != levels - 1:
                setattr(self, f"down_{lvl}_downsample", Downsample(block_in, rngs=rngs))
        self.mid_block_1 = ResBlock(block_in, block_in, cfg, rngs=rngs)
        self.mid_attn_1 = AttnBlock(block_in, cfg, rngs=rngs)
        self.mid_block_2 = ResBlock(block_in, block_in, cfg, rngs=rngs)
        self.norm_out = _group_norm(block_in, cfg, rngs)
        self.conv_out = _conv(block_in, cfg.z_channels, 3, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.cfg
        h = self.conv_in(x)
        for lvl in range(len(cfg.ch_mult)):
            for b in range(cfg.num_res_blocks):
                h = getattr(self, f"down_{lvl}_block_{b}")(h)
                if lvl in self.attn_levels:
                    h = getattr(self, f"down_{lvl}_attn_{b}")(h)
            if lvl != len(cfg.ch_mult) - 1:
                h = getattr(self, f"down_{lvl}_downsample")(h)
        h = self.mid_block_2(self.mid_attn_1(self.mid_block_1(h)))
        return self.conv_out(nnx.swish(self.norm_out(h)))


class Decoder(nnx.Module):
    """Latent [B,g,g,z_channels] -> image [B,H,W,out_ch]; `up_{k}` with k = 0 the lowest resolution."""

    def __init__(self, cfg: VQGANConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.attn_levels = _attn_levels(cfg)
        levels = len(cfg.ch_mult)
        block_in = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = _conv(cfg.z_channels, block_in, 3, rngs)
        self.mid_block_1 = ResBlock(block_in, block_in, cfg, rngs=rngs)
        self.mid_attn_1 = AttnBlock(block_in, cfg, rngs=rngs)
        self.mid_block_2 = ResBlock(block_in, block_in, cfg, rngs=rngs)
        for k in range(levels):
            lvl = levels - 1 - k
            block_out = cfg.ch * cfg.ch_mult[lvl]
            for b in range(cfg.num_res_blocks + 1):
                setattr(self, f"up_{k}_block_{b}", ResBlock(block_in, block_out, cfg, rngs=rngs))
                block_in = block_out
                if lvl in self.attn_levels:
                    setattr(self, f"up_{k}_attn_{b}", AttnBlock(block_in, cfg, rngs=rngs))
            if lvl != 0:
                setattr(self, f"up_{k}_upsample", Upsample(block_in, rngs=rngs))
        self.norm_out = _group_norm(block_in, cfg, rngs)
        self.conv_out = _conv(block_in, cfg.out_ch, 3, rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        cfg = self.cfg
        levels = len(cfg.ch_mult)
        h = self.conv_in(z)
        h = self.mid_block_2(self.mid_attn_1(self.mid_block_1(h)))
        for k in range(levels):
            lvl = levels - 1 - k
            for b in range(cfg.num_res_blocks + 1):
                h = getattr(self, f"up_{k}_block_{b}")(h)
                if lvl in self.attn_levels:
                    h = getattr(self, f"up_{k}_attn_{b}")(h)
            if lvl != 0:
                h = getattr(self, f"up_{k}_upsample")(h)
        return self.conv_out(nnx.swish(self.norm_out(h)))


class VectorQuantizer(nnx.Module):
    """Nearest codebook entry by squared L2 distance; `embedding.embedding` is the [n_embed, dim] codebook.

    Weights come from the checkpoint, so the initializer (nnx.Embed's default) only has to spread codes.
    """

    def __init__(self, n_embed: int, dim: int, *, rngs: nnx.Rngs):
        self.embedding = nnx.Embed(n_embed, dim, rngs=rngs)

    @property
    def codebook(self) -> jax.Array:
        return self.embedding.embedding[...]

    def __call__(self, z: jax.Array) -> jax.Array:
        """z [..., dim] -> int32 code ids [...]."""
        codes = self.codebook
        zf = z.astype(jnp.float32).reshape(-1, codes.shape[-1])
        # |z|^2 + |e|^2 - 2 z.e as in the official code; HIGHEST keeps GPU TF32 from flipping near-ties.
        dots = jnp.einsum("nd,kd->nk", zf, codes, precision=jax.lax.Precision.HIGHEST)
        dist = jnp.sum(zf**2, axis=-1, keepdims=True) + jnp.sum(codes**2, axis=-1) - 2.0 * dots
        return jnp.argmin(dist, axis=-1).astype(jnp.int32).reshape(z.shape[:-1])

    def lookup(self, ids: jax.Array) -> jax.Array:
        """Code ids [...] -> code vectors [..., dim] (ids clipped into range)."""
        n = self.codebook.shape[0]
        return jnp.take(self.codebook, jnp.clip(ids, 0, n - 1), axis=0)


class ImageVQGAN(nnx.Module):
    """UIO2's image target tokenizer: 256x256 RGB in [-1, 1] <-> 32x32 = 1024 code ids (released sizes)."""

    def __init__(self, cfg: VQGANConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.encoder = Encoder(cfg, rngs=rngs)
        self.quant_conv = _conv(cfg.z_channels, cfg.embed_dim, 1, rngs)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim, rngs=rngs)
        self.post_quant_conv = _conv(cfg.embed_dim, cfg.z_channels, 1, rngs)
        self.decoder = Decoder(cfg, rngs=rngs)

    def encode_latents(self, images: jax.Array) -> jax.Array:
        """Images [B,H,W,3] in [-1,1] -> pre-quantization latents [B,H/f,W/f,embed_dim]."""
        return self.quant_conv(self.encoder(images.astype(jnp.float32)))

    def encode_to_ids(self, images: jax.Array) -> jax.Array:
        """Images [B,H,W,3] in [-1,1] -> int32 code ids [B, (H/f)*(W/f)], row-major over the latent grid."""
        ids = self.quantize(self.encode_latents(images))
        return ids.reshape(ids.shape[0], -1)

    def decode_ids(self, ids: jax.Array, clip: bool = True) -> jax.Array:
        """Code ids [B, g*g] (row-major, clipped into range) -> images [B,H,W,3].

        `clip=True` clamps to [-1, 1], the range the official post-processing keeps; `clip=False` gives
        the raw decoder output (for comparing against reference implementations).
        """
        b, n = ids.shape
        g = math.isqrt(n)
        if g * g != n:
            raise ValueError(f"expected a square number of ids, got {n}")
        z = self.quantize.lookup(ids).reshape(b, g, g, self.cfg.embed_dim)
        out = self.decoder(self.post_quant_conv(z))
        return jnp.clip(out, -1.0, 1.0) if clip else out

    def ids_to_rgb(self, ids: jax.Array) -> jax.Array:
        """Code ids -> RGB in [0, 1] via (x + 1) / 2 clipped, as the official image post-processing."""
        return jnp.clip((self.decode_ids(ids, clip=False) + 1.0) / 2.0, 0.0, 1.0)

    def tokens_from_ids(self, ids: jax.Array) -> jax.Array:
        """Code ids -> target-vocabulary tokens (+2)."""
        return tokens_from_ids(ids)

    def ids_from_tokens(self, tokens: jax.Array) -> jax.Array:
        """Target-vocabulary tokens -> code ids (-2, clipped into [0, n_embed - 1])."""
        return ids_from_tokens(tokens, self.cfg.n_embed)
