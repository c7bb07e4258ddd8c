"""Audio ViT-VQGAN target tokenizer over a normalized log-mel spectrogram [B, mel, time, 1].

Attribute names mirror the official PyTorch keys under `target_embedders.audio.vqgan`
(reference/uio2-architecture.md sections 1.2, 1.6, 1.7 rule 4, 5.3). The model's own order is
mel-major (16 mel patches x 32 time patches, row-major); UIO2's token sequence is time-major, so
`encode_to_ids` / `decode_ids` speak time-major and convert with the two public reorder helpers.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from uio2_core.config import AudioVQGANConfig


def mel_major_to_time_major(ids: jax.Array, grid: tuple[int, int] = (16, 32)) -> jax.Array:
    """[..., mel*time] in (mel, time) row-major order -> [..., time*mel] in (time, mel) row-major order."""
    m, t = grid
    x = ids.reshape(*ids.shape[:-1], m, t)
    return jnp.swapaxes(x, -1, -2).reshape(*ids.shape[:-1], m * t)


def time_major_to_mel_major(ids: jax.Array, grid: tuple[int, int] = (16, 32)) -> jax.Array:
    """Inverse of `mel_major_to_time_major`."""
    m, t = grid
    x = ids.reshape(*ids.shape[:-1], t, m)
    return jnp.swapaxes(x, -1, -2).reshape(*ids.shape[:-1], m * t)


@functools.lru_cache(maxsize=8)
def sincos_pos_embed_2d(width: int, grid: tuple[int, int], temperature: float = 10000.0) -> np.ndarray:
    """Fixed MAE-style 2-D sin-cos table [gh*gw, width], rows in (h, w) row-major order.

    Layout as in the official code: [sin(w), cos(w), sin(h), cos(h)], each width/4 wide, with
    frequencies 1 / temperature^(i / (width/4)). Not a parameter, so it never enters the state.
    """
    if width % 4:
        raise ValueError(f"width must be divisible by 4 for a 2-D sin-cos embedding, got {width}")
    gh, gw = grid
    grid_w, grid_h = np.meshgrid(np.arange(gw, dtype=np.float32), np.arange(gh, dtype=np.float32))
    quarter = width // 4
    omega = (1.0 / temperature ** (np.arange(quarter, dtype=np.float32) / quarter)).astype(np.float32)

    def one_axis(pos: np.ndarray) -> np.ndarray:
        angles = pos.reshape(-1, 1) * omega[None, :]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    table = np.concatenate([one_axis(grid_w), one_axis(grid_h)], axis=1).astype(np.float32)
    table.setflags(write=False)
    return table


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """x / |x| along the last axis with the official eps inside the rsqrt."""
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


def _layer_norm(dim: int, cfg: AudioVQGANConfig, dtype: jnp.dtype, rngs: nnx.Rngs, **kw) -> nnx.LayerNorm:
    return nnx.LayerNorm(dim, epsilon=cfg.norm_eps, dtype=dtype, use_fast_variance=False, rngs=rngs, **kw)


class Attention(nnx.Module):
    """Multi-head self-attention, q/k/v/out without bias, 1/sqrt(head_dim) scaling, no mask."""

    def __init__(self, cfg: AudioVQGANConfig, dtype: jnp.dtype, *, rngs: nnx.Rngs):
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        inner = cfg.num_heads * cfg.head_dim
        self.query = nnx.Linear(cfg.width, inner, use_bias=False, dtype=dtype, rngs=rngs)
        self.key = nnx.Linear(cfg.width, inner, use_bias=False, dtype=dtype, rngs=rngs)
        self.value = nnx.Linear(cfg.width, inner, use_bias=False, dtype=dtype, rngs=rngs)
        self.out = nnx.Linear(inner, cfg.width, use_bias=False, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, _ = x.shape

        def heads(t: jax.Array) -> jax.Array:
            return t.reshape(b, n, self.num_heads, self.head_dim)

        q = heads(self.query(x)) / jnp.sqrt(self.head_dim).astype(x.dtype)
        k, v = heads(self.key(x)), heads(self.value(x))
        # Softmax in float32 for stability when the compute dtype is bfloat16.
        weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32), axis=-1)
        y = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(v.dtype), v)
        return self.out(y.reshape(b, n, self.num_heads * self.head_dim))


class Mlp(nnx.Module):
    """fc1 -> ReLU -> fc2, both with bias."""

    def __init__(self, cfg: AudioVQGANConfig, dtype: jnp.dtype, *, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(cfg.width, cfg.mlp_dim, dtype=dtype, rngs=rngs)
        self.fc2 = nnx.Linear(cfg.mlp_dim, cfg.width, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(nnx.relu(self.fc1(x)))


class TransformerBlock(nnx.Module):
    """Pre-LN block: x + attn(ln_1(x)), then + mlp(ln_2(.))."""

    def __init__(self, cfg: AudioVQGANConfig, dtype: jnp.dtype, *, rngs: nnx.Rngs):
        self.ln_1 = _layer_norm(cfg.width, cfg, dtype, rngs)
        self.attn = Attention(cfg, dtype, rngs=rngs)
        self.ln_2 = _layer_norm(cfg.width, cfg, dtype, rngs)
        self.mlp = Mlp(cfg, dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nnx.Module):
    """`encoderblock_{k}` blocks then a final `encoder_norm` (the name is the same in the decoder)."""

    def __init__(self, cfg: AudioVQGANConfig, num_layers: int, dtype: jnp.dtype, *, rngs: nnx.Rngs):
        self.num_layers = num_layers
        for k in range(num_layers):
            setattr(self, f"encoderblock_{k}", TransformerBlock(cfg, dtype, rngs=rngs))
        # As released, the final norm has no compute dtype, so it hands float32 onwards.
        self.encoder_norm = _layer_norm(cfg.width, cfg, jnp.dtype(jnp.float32), rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for k in range(self.num_layers):
            x = getattr(self, f"encoderblock_{k}")(x)
        return self.encoder_norm(x)


def _patchify(x: jax.Array, patch: tuple[int, int]) -> jax.Array:
    """[B, H, W, C] -> [B, (H/ph)*(W/pw), ph*pw*C], patches row-major, features in (dh, dw, c) order."""
    b, h, w, c = x.shape
    ph, pw = patch
    x = x.reshape(b, h // ph, ph, w // pw, pw, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // ph) * (w // pw), ph * pw * c)


class ViTEncoder(nnx.Module):
    """Spectrogram [B, mel, time, 1] -> latents [B, mel-major tokens, embed_dim]."""

    def __init__(self, cfg: AudioVQGANConfig, dtype: jnp.dtype, *, rngs: nnx.Rngs):
        self.cfg, self.dtype = cfg, dtype
        ph, pw = cfg.patch_size
        self.embedding = nnx.Linear(ph * pw, cfg.width, use_bias=True, dtype=dtype, rngs=rngs)
        self.transformer = Transformer(cfg, cfg.num_encoder_layers, dtype, rngs=rngs)
        self.encoder_proj = nnx.Linear(cfg.width, cfg.embed_dim, use_bias=False, dtype=dtype, rngs=rngs)
        # LayerNorm with a bias but no scale, as in the release.
        self.encoder_norm = _layer_norm(cfg.embed_dim, cfg, dtype, rngs, use_scale=False)

    def __call__(self, spec: jax.Array) -> jax.Array:
        cfg = self.cfg
        x = self.embedding(_patchify(spec.astype(self.dtype), cfg.patch_size))
        x = x + jnp.asarray(sincos_pos_embed_2d(cfg.width, cfg.grid), self.dtype)
        x = nnx.relu(self.transformer(x))
        return self.encoder_norm(self.encoder_proj(x))


class ViTDecoder(nnx.Module):
    """Code vectors [B, mel-major tokens, embed_dim] -> spectrogram [B, mel, time, 1]."""

    def __init__(self, cfg: AudioVQGANConfig, dtype: jnp.dtype, *, rngs: nnx.Rngs):
        self.cfg, self.dtype = cfg, dtype
        self.decoder_proj = nnx.Linear(cfg.embed_dim, cfg.width, use_bias=False, dtype=dtype, rngs=rngs)
        self.transformer = Transformer(cfg, cfg.num_decoder_layers, dtype, rngs=rngs)
        # Flax (non-flipped) ConvTranspose, kernel [kh, kw, width, 1] = the T5X checkpoint layout; the
        # PyTorch weight [width, 1, kh, kw] maps to it by transpose (2, 3, 0, 1) plus a flip of kh and kw.
        # kernel == stride, so 'VALID' and 'SAME' coincide and every token owns one 8x8 output patch.
        # Runs in float32 whatever the compute dtype, as released.
        self.conv_transpose = nnx.ConvTranspose(
            cfg.width,
            1,
            cfg.patch_size,
            strides=cfg.patch_size,
            padding="VALID",
            use_bias=False,
            dtype=jnp.float32,
            rngs=rngs,
        )

    def tokens_to_spectrogram(self, h: jax.Array) -> jax.Array:
        """Hidden states [B, gm*gt, width], mel-major -> [B, mel, time, 1] by the patch-wise ConvTranspose."""
        gm, gt = self.cfg.grid
        return self.conv_transpose(h.reshape(h.shape[0], gm, gt, h.shape[-1]))

    def __call__(self, z: jax.Array) -> jax.Array:
        x = self.decoder_proj(z.astype(self.dtype))
        x = x + jnp.asarray(sincos_pos_embed_2d(self.cfg.width, self.cfg.grid), self.dtype)
        return self.tokens_to_spectrogram(self.transformer(x))


class CosineVectorQuantizer(nnx.Module):
    """Nearest code after l2-normalising inputs and codes (so it depends on directions only)."""

    def __init__(self, n_embed: int, dim: int, *, rngs: nnx.Rngs):
        self.embedding = nnx.Embed(n_embed, dim, rngs=rngs)

    @property
    def codebook(self) -> jax.Array:
        return self.embedding.embedding[...]

    def __call__(self, z: jax.Array) -> jax.Array:
        """z [..., dim] -> int32 ids [...]; same distance formula as the official code, in float32."""
        codes = l2_normalize(self.codebook.astype(jnp.float32))
        zn = l2_normalize(z.astype(jnp.float32).reshape(-1, codes.shape[-1]))
        dots = jnp.einsum("nd,kd->nk", zn, codes, precision=jax.lax.Precision.HIGHEST)
        dist = jnp.sum(zn**2, axis=-1, keepdims=True) + jnp.sum(codes**2, axis=-1) - 2.0 * dots
        return jnp.argmin(dist, axis=-1).astype(jnp.int32).reshape(z.shape[:-1])

    def lookup(self, ids: jax.Array) -> jax.Array:
        """ids [...] (clipped into range) -> l2-normalised code vectors [..., dim], which the decoder eats."""
        n = self.codebook.shape[0]
        return l2_normalize(jnp.take(self.codebook, jnp.clip(ids, 0, n - 1), axis=0))


class AudioVQGAN(nnx.Module):
    """UIO2's audio target tokenizer: [B, 128 mel, 256 time, 1] <-> 512 time-major code ids.

    `dtype` is the compute dtype of the transformer blocks and projections (the release ran bfloat16);
    parameters stay float32, and the final transformer norms, the ConvTranspose and the quantizer run
    in float32 as in the release, so `decode_ids` returns float32.
    """

    def __init__(self, cfg: AudioVQGANConfig, *, rngs: nnx.Rngs, dtype: jnp.dtype = jnp.float32):
        self.cfg = cfg
        self.quantize = CosineVectorQuantizer(cfg.n_embed, cfg.embed_dim, rngs=rngs)
        self.encoder = ViTEncoder(cfg, jnp.dtype(dtype), rngs=rngs)
        self.decoder = ViTDecoder(cfg, jnp.dtype(dtype), rngs=rngs)

    def encode_latents(self, spec: jax.Array) -> jax.Array:
        """[B, mel, time, 1] -> pre-quantization latents [B, gm*gt, embed_dim], mel-major."""
        return self.encoder(spec)

    def encode_to_ids(self, spec: jax.Array) -> jax.Array:
        """[B, mel, time, 1] -> int32 ids [B, gm*gt] in UIO2's time-major token order."""
        return mel_major_to_time_major(self.quantize(self.encode_latents(spec)), self.cfg.grid)

    def decode_ids(self, ids: jax.Array) -> jax.Array:
        """Time-major ids [B, gm*gt] (clipped into range) -> spectrogram [B, mel, time, 1] in float32."""
        z = self.quantize.lookup(time_major_to_mel_major(ids, self.cfg.grid))
        return self.decoder(z).astype(jnp.float32)
