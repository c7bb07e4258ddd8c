"""The complete UIO2 network: input embedders, encoder, decoder, per-modality tied outputs.

    enc = model.encode(batch)                        # once per observation
    logits = model.decode(enc, {"text": targets})    # teacher forcing (training, scoring)
    cache = model.init_cache(enc, "text", max_len)   # incremental decoding (uio2_core.decoding)
    logits, cache = model.decode_step(enc, "text", token, index, cache)

Top-level attribute names follow the official schema (`text_token_embedder`,
`image_token_embedder`, `audio_token_embedder`, `input_embedders`, `target_embedders`,
`encoder`, `decoder`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from uio2_core.batch import check_inputs
from uio2_core.config import UIO2Config
from uio2_core.inputs import INPUT_MODALITIES, InputEmbedders, InputSequence, concat_sequences
from uio2_core.rope import audio_target_table, grid_table, rope_table_1d
from uio2_core.transformer import Cache, Decoder, Encoder

TARGET_MODALITIES: tuple[str, ...] = ("text", "image", "audio")


class Encoded(NamedTuple):
    """Encoder output with what the decoder needs: key mask, key RoPE table, packed segment ids."""

    encoded: jax.Array  # [B, L, d]
    mask: jax.Array  # [B, L] bool
    rope: jax.Array  # [B, L, head_dim]
    segment_ids: jax.Array | None  # [B, L] int or None


class TargetEmbedder(nnx.Module):
    """`target_embedders.<modality>`: the modality embedding, and the VQ-GAN for image/audio."""

    def __init__(self, cfg: UIO2Config, modality: str, *, rngs: nnx.Rngs, with_vqgan: bool):
        d, pdt = cfg.transformer.d_model, jnp.dtype(cfg.param_dtype)
        self.modality_embedding = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (d,), pdt))
        if with_vqgan and modality == "image":
            from uio2_core.image_vqgan import ImageVQGAN

            self.vqgan = ImageVQGAN(cfg.image_vqgan, rngs=rngs)
        elif with_vqgan and modality == "audio":
            from uio2_core.audio_vqgan import AudioVQGAN

            self.vqgan = AudioVQGAN(cfg.audio_vqgan, rngs=rngs, dtype=cfg.compute_dtype)
        else:
            self.vqgan = None


class TargetEmbedders(nnx.Module):
    def __init__(self, cfg: UIO2Config, *, rngs: nnx.Rngs, with_vqgan: bool):
        for m in TARGET_MODALITIES:
            setattr(self, m, TargetEmbedder(cfg, m, rngs=rngs, with_vqgan=with_vqgan))


def segment_positions(segment_ids: jax.Array) -> jax.Array:
    """Positions that restart at 0 at every change of segment id (packed rows)."""
    idx = jnp.arange(segment_ids.shape[1])[None]
    change = jnp.concatenate(
        [jnp.ones_like(segment_ids[:, :1], bool), segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1
    )
    start = jax.lax.cummax(jnp.where(change, idx, 0), axis=1)
    return idx - start


def shift_right(targets: jax.Array, segment_ids: jax.Array | None = None) -> jax.Array:
    """Decoder inputs = [BOS=0] + targets[:-1], restarting with BOS at each packed segment."""
    shifted = jnp.concatenate([jnp.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)
    if segment_ids is not None:
        shifted = jnp.where(segment_positions(segment_ids) == 0, 0, shifted)
    return shifted


class UIO2Model(nnx.Module):
    """Unified-IO 2. `with_vqgan=False` leaves the VQ-GANs out (agents that only emit text)."""

    def __init__(self, cfg: UIO2Config, *, rngs: nnx.Rngs, with_vqgan: bool = True):
        t, pdt, dtype = cfg.transformer, jnp.dtype(cfg.param_dtype), cfg.compute_dtype
        self.cfg = cfg
        emb_init = nnx.initializers.normal(1.0)
        self.text_token_embedder = nnx.Embed(
            t.text_vocab_size, t.d_model, embedding_init=emb_init, param_dtype=pdt, rngs=rngs
        )
        self.image_token_embedder = nnx.Embed(
            t.image_vocab_size, t.d_model, embedding_init=emb_init, param_dtype=pdt, rngs=rngs
        )
        self.audio_token_embedder = nnx.Embed(
            t.audio_vocab_size, t.d_model, embedding_init=emb_init, param_dtype=pdt, rngs=rngs
        )
        self.input_embedders = InputEmbedders(cfg, rngs=rngs)
        self.target_embedders = TargetEmbedders(cfg, rngs=rngs, with_vqgan=with_vqgan)
        self.encoder = Encoder(t, rngs=rngs, dtype=dtype, param_dtype=pdt)
        self.decoder = Decoder(t, rngs=rngs, dtype=dtype, param_dtype=pdt)

    # ---- encoder -------------------------------------------------------------------------
    def embed_inputs(self, batch: Mapping[str, jax.Array]) -> InputSequence:
        """All present modalities, in the fixed order, concatenated: [B, L, d]."""
        check_inputs(self.cfg, batch)
        emb = self.input_embedders
        parts: list[InputSequence] = []
        for m in INPUT_MODALITIES:
            if f"{m}_latents" in batch:  # a history given as its frames' (clips') latents
                latents, valid = batch[f"{m}_latents"], batch.get(f"{m}_latents_mask")
                if valid is None:
                    valid = jnp.ones(latents.shape[:2], bool)
                parts.append(getattr(emb, m).from_latents(jnp.asarray(latents), valid))
                continue
            if m not in batch:
                continue
            x, mask = jnp.asarray(batch[m]), batch.get(f"{m}_mask")
            if m == "text":
                parts.append(emb.text(x, self.text_token_embedder))
            elif m == "image":
                parts.append(emb.image(x, mask))
            elif m == "audio":
                parts.append(emb.audio(x, mask))
            elif m == "image_history":
                parts.append(emb.image_history(x, mask, emb.image.vit))
            else:
                parts.append(emb.audio_history(x, mask, emb.audio.vit))
        return concat_sequences(parts)

    def history_latents(
        self, frames: jax.Array, patch_mask: jax.Array | None = None, *, audio: bool = False
    ) -> jax.Array:
        """Image-history frames [N, s, s, 3] (+ patch masks [N, P]) -> their latents [N, n, d], the
        `image_history_latents` input (a frame's latents depend on that frame alone); `audio`:
        audio-history clips [N, 256, 128, 1] (+ [N, P]) -> `audio_history_latents`."""
        emb = self.input_embedders
        if audio:
            return emb.audio_history.frame_latents(frames, patch_mask, emb.audio.vit)
        return emb.image_history.frame_latents(frames, patch_mask, emb.image.vit)

    def encode_sequence(self, seq: InputSequence, segment_ids: jax.Array | None = None) -> Encoded:
        """Bidirectional encoder with a padding mask (and same-segment mask for packed rows)."""
        mask = seq.mask[:, None, :, None] & seq.mask[:, None, None, :]
        if segment_ids is not None:
            mask = mask & (segment_ids[:, None, :, None] == segment_ids[:, None, None, :])
        encoded = self.encoder(seq.embed, seq.rope, mask)
        return Encoded(encoded, seq.mask, seq.rope, segment_ids)

    def encode(self, batch: Mapping[str, jax.Array]) -> Encoded:
        return self.encode_sequence(self.embed_inputs(batch))

    # ---- targets -------------------------------------------------------------------------
    def token_embedder(self, modality: str) -> nnx.Embed:
        if modality not in TARGET_MODALITIES:
            raise ValueError(f"unknown target modality {modality!r}; expected one of {TARGET_MODALITIES}")
        return getattr(self, f"{modality}_token_embedder")

    def max_target_length(self, modality: str) -> int:
        cfg = self.cfg
        return {
            "text": cfg.transformer.decoder_max_text_length,
            "image": cfg.decoder_max_image_length,
            "audio": cfg.decoder_max_audio_length,
        }[modality]

    def target_rope_table(self, modality: str) -> jax.Array:
        """[max_length, head_dim]: 1-D for text, 32x32 grid for image, the audio quirk for audio."""
        t, cfg = self.cfg.transformer, self.cfg
        if modality == "text":
            return rope_table_1d(jnp.arange(t.decoder_max_text_length), t.head_dim, t.rope_base)
        if modality == "image":
            g = cfg.image_vqgan.grid
            return grid_table(g, g, t.head_dim, base=t.rope_base)
        return audio_target_table(cfg.decoder_max_audio_length, cfg.audio_vqgan.grid, t.head_dim, t.rope_base)

    def embed_target_tokens(self, modality: str, tokens: jax.Array) -> jax.Array:
        dtype = self.cfg.compute_dtype
        me = getattr(self.target_embedders, modality).modality_embedding[...].astype(dtype)
        return self.token_embedder(modality)(tokens).astype(dtype) + me

    # {modality: the output embedding transposed, [d, V]}, set on a decoding copy of the model
    # (`decoding.use_step_weights`): XLA's CPU backend reads it faster in a one-row product
    logit_tables_t: dict | None = None

    def logits(self, modality: str, hidden: jax.Array) -> jax.Array:
        """Tied output embedding: logits = h E^T / sqrt(d), in float32."""
        h = hidden.astype(jnp.float32)
        table_t = (self.logit_tables_t or {}).get(modality)
        if table_t is not None:
            out = jnp.einsum("...d,dv->...v", h, table_t.astype(jnp.float32))
        else:
            table = self.token_embedder(modality).embedding[...].astype(jnp.float32)
            out = jnp.einsum("...d,vd->...v", h, table)
        return out / math.sqrt(self.cfg.transformer.d_model)

    def decode(
        self,
        enc: Encoded,
        targets: Mapping[str, jax.Array],
        target_masks: Mapping[str, jax.Array] | None = None,
        segment_ids: Mapping[str, jax.Array] | None = None,
        logit_positions: Mapping[str, jax.Array] | None = None,
    ) -> dict[str, jax.Array]:
        """Teacher-forced decoding of one or several target modalities -> logits per modality.

        `targets[m]` are the tokens to predict [B, Lm]; inputs are shifted right with BOS.
        Modalities are concatenated but cannot attend to each other (subsegment mask).
        `logit_positions[m]` ([K] indices into the flattened [B * Lm] positions): logits of those positions
        only, [1, K, V] (training: the output projection over the whole vocabulary is most of a
        small model's step, and most target positions are padding).
        """
        target_masks = target_masks or {}
        segment_ids = segment_ids or {}
        xs, ropes, masks, subsegs, segs, lengths = [], [], [], [], [], []
        for i, m in enumerate(TARGET_MODALITIES):
            if m not in targets:
                continue
            tgt = jnp.asarray(targets[m])
            b, length = tgt.shape
            if length > self.max_target_length(m):
                raise ValueError(
                    f"{m} target has {length} tokens, more than the limit {self.max_target_length(m)}"
                )
            seg = segment_ids.get(m)
            mask = target_masks.get(m)
            if mask is None:
                mask = tgt != 0 if m == "text" else jnp.ones_like(tgt, bool)
            table = self.target_rope_table(m)
            positions = (
                segment_positions(seg)
                if seg is not None
                else jnp.broadcast_to(jnp.arange(length), (b, length))
            )
            xs.append(self.embed_target_tokens(m, shift_right(tgt, seg)))
            ropes.append(table[positions].astype(self.cfg.compute_dtype))
            masks.append(mask.astype(bool))
            subsegs.append(jnp.full((b, length), i))
            segs.append(seg if seg is not None else jnp.zeros((b, length), jnp.int32))
            lengths.append((m, length))
        if not xs:
            raise ValueError(f"no target given; expected some of {TARGET_MODALITIES}")
        x, rope, mask = (jnp.concatenate(a, axis=1) for a in (xs, ropes, masks))
        sub, seg = jnp.concatenate(subsegs, axis=1), jnp.concatenate(segs, axis=1)
        n = x.shape[1]
        causal = jnp.tril(jnp.ones((n, n), bool))[None, None]
        self_mask = causal & mask[:, None, :, None] & mask[:, None, None, :]
        self_mask &= (sub[:, None, :, None] == sub[:, None, None, :]) & (
            seg[:, None, :, None] == seg[:, None, None, :]
        )
        cross_mask = mask[:, None, :, None] & enc.mask[:, None, None, :]
        if enc.segment_ids is not None:
            cross_mask &= seg[:, None, :, None] == enc.segment_ids[:, None, None, :]
        hidden = self.decoder(x, rope, self_mask, enc.encoded, enc.rope, cross_mask)
        out, start = {}, 0
        for m, length in lengths:
            h = hidden[:, start : start + length]
            if logit_positions is not None and m in logit_positions:
                h = h.reshape(-1, h.shape[-1])[logit_positions[m]][None]
            out[m] = self.logits(m, h)
            start += length
        return out

    def __call__(
        self, batch: Mapping[str, jax.Array], targets: Mapping[str, jax.Array], **kw
    ) -> dict[str, jax.Array]:
        return self.decode(self.encode(batch), targets, **kw)

    # ---- incremental decoding ------------------------------------------------------------
    def init_cache(self, enc: Encoded, modality: str, max_length: int) -> Cache:
        limit = self.max_target_length(modality)
        if max_length > limit:
            raise ValueError(f"max_length {max_length} exceeds the {modality} target limit {limit}")
        return self.decoder.init_cache(enc.encoded, enc.rope, max_length)

    def decode_step(
        self, enc: Encoded, modality: str, token: jax.Array, index: jax.Array, cache: Cache
    ) -> tuple[jax.Array, Cache]:
        """Feed the token at position `index` ([B] ids) -> logits for position index + 1's token."""
        x = self.embed_target_tokens(modality, token[:, None])
        table = jax.lax.dynamic_slice_in_dim(self.target_rope_table(modality), index, 1, axis=0)
        rope = jnp.broadcast_to(table[None], (x.shape[0], 1, table.shape[-1])).astype(self.cfg.compute_dtype)
        cross_mask = enc.mask[:, None, None, :]
        hidden, cache = self.decoder.step(x, rope, index, cache, cross_mask)
        return self.logits(modality, hidden[:, 0]), cache


def build_model(cfg: UIO2Config, seed: int = 0, *, with_vqgan: bool = True) -> UIO2Model:
    return UIO2Model(cfg, rngs=nnx.Rngs(seed), with_vqgan=with_vqgan)


@contextlib.contextmanager
def _cheap_tracer_errors():
    """Flax's Variable.set_value probes `tracer.sharding`, whose AttributeError message walks the
    whole trace (quadratic in model size: 25 s for xxl). Nothing reads that message while we build
    abstract shapes, so make it empty for the duration (a no-op if jax's internals move)."""
    from jax._src.interpreters import partial_eval as pe

    tracer = getattr(pe, "DynamicJaxprTracer", None)
    original = getattr(tracer, "_origin_msg", None)
    if original is None:
        yield
        return
    tracer._origin_msg = lambda self: ""
    try:
        yield
    finally:
        tracer._origin_msg = original


def abstract_model(cfg: UIO2Config, *, with_vqgan: bool = True) -> UIO2Model:
    """The model with abstract (shape-only) parameters: nothing is allocated."""
    with _cheap_tracer_errors():
        return nnx.eval_shape(lambda: UIO2Model(cfg, rngs=nnx.Rngs(0), with_vqgan=with_vqgan))


COMPONENTS: dict[str, Sequence[str]] = {
    "token_embeddings": ("text_token_embedder", "image_token_embedder", "audio_token_embedder"),
    "encoder": ("encoder",),
    "decoder": ("decoder",),
    "image_history_resampler": ("input_embedders", "image_history", "resampler"),
    "audio_history_resampler": ("input_embedders", "audio_history", "resampler"),
    "image_vit": ("input_embedders", "image", "image_encoder"),
    "audio_ast": ("input_embedders", "audio", "image_encoder"),
    "image_vqgan": ("target_embedders", "image", "vqgan"),
    "audio_vqgan": ("target_embedders", "audio", "vqgan"),
}


def parameter_counts(model: UIO2Model) -> dict[str, int]:
    """Parameter count per component (as the reference tabulates them) and the total."""
    params = nnx.state(model, nnx.Param)
    flat = [(tuple(str(k) for k in path), v) for path, v in nnx.to_flat_state(params)]
    counts = dict.fromkeys([*COMPONENTS, "projections_and_modality_embeddings"], 0)
    for path, var in flat:
        size = math.prod(var.shape)
        for name, prefix in COMPONENTS.items():
            if path[0] in prefix if name == "token_embeddings" else path[: len(prefix)] == tuple(prefix):
                counts[name] += size
                break
        else:
            counts["projections_and_modality_embeddings"] += size
    counts["trainable_core"] = sum(
        counts[k]
        for k in (
            "token_embeddings",
            "encoder",
            "decoder",
            "image_history_resampler",
            "audio_history_resampler",
            "projections_and_modality_embeddings",
        )
    )
    counts["total"] = sum(v for k, v in counts.items() if k != "trainable_core")
    return counts
