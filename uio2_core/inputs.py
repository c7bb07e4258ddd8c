"""Input embedders: each modality -> (embeddings, mask, RoPE table) for the encoder.

Order in the encoder sequence: text, image, image_history, audio, audio_history
(reference section 3). The ViT and AST are frozen (stop-gradient) and owned by the image
and audio embedders; the history embedders borrow them at call time, so each is stored once.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from uio2_core.config import UIO2Config
from uio2_core.layers import dense
from uio2_core.perceiver import Resampler
from uio2_core.rope import grid_table, rope_table_1d
from uio2_core.vit import VisionTransformer, patchify

INPUT_MODALITIES: tuple[str, ...] = ("text", "image", "image_history", "audio", "audio_history")


class InputSequence(NamedTuple):
    """One modality's part of the encoder input."""

    embed: jax.Array  # [B, L, d]
    mask: jax.Array  # [B, L] bool
    rope: jax.Array  # [B, L, head_dim]


def concat_sequences(parts: list[InputSequence]) -> InputSequence:
    if not parts:
        raise ValueError(
            "no input modality given: the encoder needs at least one of " + ", ".join(INPUT_MODALITIES)
        )
    return InputSequence(*(jnp.concatenate(xs, axis=1) for xs in zip(*parts, strict=True)))


def _modality_embedding(d: int, rngs: nnx.Rngs, param_dtype) -> nnx.Param:
    return nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (d,), param_dtype))


def _broadcast_rope(table: jax.Array, batch: int, dtype) -> jax.Array:
    return jnp.broadcast_to(table, (batch, *table.shape)).astype(dtype)


class ImageEncoderHolder(nnx.Module):
    """Mirrors the official nesting `image_encoder.vision_transformer` (also used for the AST)."""

    def __init__(self, vit: VisionTransformer):
        self.vision_transformer = vit


class TextInputEmbedder(nnx.Module):
    def __init__(self, cfg: UIO2Config, *, rngs: nnx.Rngs):
        t = cfg.transformer
        self.cfg = cfg
        self.modality_embedding = _modality_embedding(t.d_model, rngs, jnp.dtype(cfg.param_dtype))

    def __call__(self, tokens: jax.Array, token_embedder: nnx.Embed) -> InputSequence:
        t, dtype = self.cfg.transformer, self.cfg.compute_dtype
        b, length = tokens.shape
        x = token_embedder(tokens).astype(dtype) + self.modality_embedding[...].astype(dtype)
        rope = _broadcast_rope(rope_table_1d(jnp.arange(length), t.head_dim, t.rope_base), b, dtype)
        return InputSequence(x, tokens != 0, rope)


class ImageInputEmbedder(nnx.Module):
    """One image: ViT features concat(block 11, block 2) -> projection; RoPE grid scaled by 4/3."""

    def __init__(self, cfg: UIO2Config, vit_cfg, *, rngs: nnx.Rngs, audio: bool = False):
        t, pdt = cfg.transformer, jnp.dtype(cfg.param_dtype)
        self.cfg, self.audio = cfg, audio
        self.image_encoder = ImageEncoderHolder(VisionTransformer(vit_cfg, rngs=rngs))
        self.projection = dense(
            2 * vit_cfg.width, t.d_model, rngs=rngs, dtype=cfg.compute_dtype, param_dtype=pdt
        )
        self.modality_embedding = _modality_embedding(t.d_model, rngs, pdt)
        # UIO2 keeps its ViT frozen (no gradient reaches it); training from scratch may set this True so
        # that the ViT learns with the rest (the forward pass is the same either way)
        self.train_vit = False

    @property
    def vit(self) -> VisionTransformer:
        return self.image_encoder.vision_transformer

    def grid(self) -> tuple[int, int]:
        if self.audio:
            return self.cfg.audio_grid
        g = self.cfg.image_grid
        return (g, g)

    def __call__(self, x: jax.Array, patch_mask: jax.Array | None) -> InputSequence:
        t, dtype = self.cfg.transformer, self.cfg.compute_dtype
        grid = self.grid()
        patches = patchify(x, self.vit.cfg.patch_size)
        b, n = patches.shape[:2]
        mask = jnp.ones((b, n), bool) if patch_mask is None else patch_mask.astype(bool)
        last, second = self.vit(patches, grid, mask)
        feats = jnp.concatenate([last, second], axis=-1)
        feats = feats if self.train_vit else jax.lax.stop_gradient(feats)
        embed = self.projection(feats.astype(dtype)) + self.modality_embedding[...].astype(dtype)
        table = grid_table(*grid, t.head_dim, scale=self.cfg.input_rope_scale, base=t.rope_base)
        return InputSequence(embed, mask, _broadcast_rope(table, b, dtype))


class HistoryEmbedder(nnx.Module):
    """Frames (or audio clips) -> borrowed ViT/AST block-11 features -> perceiver -> latents per frame.

    A frame's latents are valid iff any of its patches is valid. RoPE over (frame, latent).
    """

    def __init__(self, cfg: UIO2Config, *, rngs: nnx.Rngs, audio: bool = False):
        t, pdt, dtype = cfg.transformer, jnp.dtype(cfg.param_dtype), cfg.compute_dtype
        self.cfg, self.audio = cfg, audio
        p = cfg.audio_history if audio else cfg.image_history
        vit_cfg = cfg.audio_vit if audio else cfg.image_vit
        self.pcfg = p
        self.pre_projection = dense(vit_cfg.width, p.width, rngs=rngs, dtype=dtype, param_dtype=pdt)
        self.resampler = Resampler(p, rngs=rngs, dtype=dtype)
        self.post_projection = dense(p.width, t.d_model, rngs=rngs, dtype=dtype, param_dtype=pdt)
        self.modality_embedding = _modality_embedding(t.d_model, rngs, pdt)
        self.train_vit = False  # as ImageInputEmbedder.train_vit, for the borrowed ViT

    def grid(self) -> tuple[int, int]:
        if self.audio:
            return self.cfg.audio_grid
        g = self.cfg.image_history_grid
        return (g, g)

    def frame_latents(
        self, frames: jax.Array, patch_mask: jax.Array | None, vit: VisionTransformer
    ) -> jax.Array:
        """frames [N, H, W, C], patch_mask [N, P] -> latents [N, num_latents, d] (before the modality
        embedding). Each frame's latents depend on that frame alone, so an agent can compute them
        once, when the frame enters its history, and keep them (`from_latents`)."""
        dtype = self.cfg.compute_dtype
        patches = patchify(frames, vit.cfg.patch_size)
        n, p = patches.shape[:2]
        mask = jnp.ones((n, p), bool) if patch_mask is None else patch_mask.reshape(n, p).astype(bool)
        feats, _ = vit(patches, self.grid(), mask)
        feats = feats if self.train_vit else jax.lax.stop_gradient(feats)
        return self.post_projection(self.resampler(self.pre_projection(feats.astype(dtype)), mask))

    def from_latents(self, latents: jax.Array, frame_valid: jax.Array) -> InputSequence:
        """latents [B, T, num_latents, d] (`frame_latents`), frame_valid [B, T] -> [B, T * num_latents, d]."""
        t, dtype, p = self.cfg.transformer, self.cfg.compute_dtype, self.pcfg
        b, nf = latents.shape[:2]
        embed = latents.astype(dtype) + self.modality_embedding[...].astype(dtype)
        embed = embed.reshape(b, nf * p.num_latents, t.d_model)
        token_mask = jnp.repeat(frame_valid.astype(bool), p.num_latents, axis=1)
        table = grid_table(p.max_frames, p.num_latents, t.head_dim, base=t.rope_base)[: nf * p.num_latents]
        return InputSequence(embed, token_mask, _broadcast_rope(table, b, dtype))

    def __call__(
        self, frames: jax.Array, patch_mask: jax.Array | None, vit: VisionTransformer
    ) -> InputSequence:
        """frames [B, T, H, W, C], patch_mask [B, T, P] -> [B, T * num_latents, d].

        A frame's latents are valid iff any of its patches is valid."""
        b, nf = frames.shape[:2]
        flat = frames.reshape(b * nf, *frames.shape[2:])
        mask = None if patch_mask is None else patch_mask.reshape(b * nf, -1)
        latents = self.frame_latents(flat, mask, vit)
        valid = jnp.ones((b, nf), bool) if patch_mask is None else patch_mask.astype(bool).any(axis=-1)
        return self.from_latents(latents.reshape(b, nf, *latents.shape[1:]), valid)


class InputEmbedders(nnx.Module):
    """`input_embedders.{text, image, image_history, audio, audio_history}`."""

    def __init__(self, cfg: UIO2Config, *, rngs: nnx.Rngs):
        self.text = TextInputEmbedder(cfg, rngs=rngs)
        self.image = ImageInputEmbedder(cfg, cfg.image_vit, rngs=rngs)
        self.image_history = HistoryEmbedder(cfg, rngs=rngs)
        self.audio = ImageInputEmbedder(cfg, cfg.audio_vit, rngs=rngs, audio=True)
        self.audio_history = HistoryEmbedder(cfg, rngs=rngs, audio=True)
