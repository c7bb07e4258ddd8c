"""Generation: encode once, then a compiled incremental decoder with a KV cache.

Greedy, temperature / top-k / top-p sampling and beam search; a constraint (see
`uio2_core.constraints`) restricts every step; classifier-free guidance for image and audio
targets; scoring of answer options by mean token log-likelihood.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from uio2_core.constraints import TokenDFA, gather_state
from uio2_core.layers import PackedDense
from uio2_core.model import Encoded, UIO2Model

EOS_ID = 1
PAD_ID = 0
NEG = -1e9


# packing pays from about this model width (benchmarks/decode.py on a 2-core CPU: large, 1024 wide,
# 1.09-1.14x faster per token; tiny, 64 wide, 0.85-1.11x in three runs: nothing to gain)
PACK_MIN_WIDTH = 512


@dataclass(frozen=True)
class DecodeConfig:
    max_new_tokens: int = 32
    method: Literal["greedy", "sample", "beam"] = "greedy"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num_beams: int = 4
    length_penalty: float = 0.0  # beam search brevity alpha; 0 = raw log-likelihood (released setting)
    guidance_scale: float | None = None  # classifier-free guidance (image/audio); needs a negative batch
    stop_at_eos: bool = True  # text stops at EOS; image/audio always generate the full length
    # greedy under a TokenDFA: feed a run of grammar-forced tokens in one call of up to this many
    # positions ("jump-forward"; 0 or 1 = one call per token)
    jump_forward: int = 8
    # beam search: the beams of a row share its encoder output and cross keys/values (False: k copies
    # of each, reordered with the cache at every step, as before; kept for before/after measurements)
    beam_share_encoder: bool = True
    # the decoder's step weights packed for one-row products (`step_weights`: kernels transposed, q|k|v
    # and wi_0|wi_1 each one kernel; a copy kept per model), which XLA's CPU backend reads faster.
    # None: on a CPU backend for models at least PACK_MIN_WIDTH wide; False: the kernels as they are
    packed_weights: bool | None = None

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.method not in ("greedy", "sample", "beam"):
            raise ValueError(f"unknown decoding method {self.method!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    def packs(self, model: UIO2Model) -> bool:
        """`packed_weights`, with None resolved for the model and the backend that runs the decode."""
        if self.packed_weights is not None:
            return self.packed_weights
        return jax.default_backend() == "cpu" and model.cfg.transformer.d_model >= PACK_MIN_WIDTH


_SPLITS: dict[int, tuple] = {}
HOST_CACHING = True  # benchmarks switch this off to measure what the caches save


class StaticGraph:
    """A graphdef as a jit static argument whose hash is computed once: hashing an NNX graphdef
    walks the whole module tree (milliseconds for a model), and jit hashes static arguments on
    every call."""

    __slots__ = ("_hash", "graphdef")

    def __init__(self, graphdef):
        self.graphdef, self._hash = graphdef, hash(graphdef)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        return isinstance(other, StaticGraph) and (other is self or other.graphdef == self.graphdef)


def _split(model: UIO2Model) -> tuple[StaticGraph, nnx.State]:
    if not HOST_CACHING:
        graphdef, state = nnx.split(model)
        return StaticGraph(graphdef), state
    children = tuple(id(v) for v in vars(model).values())
    hit = _SPLITS.get(id(model))
    if hit is not None and hit[0]() is model and hit[1] == children:
        return hit[2], hit[3]
    graphdef, state = nnx.split(model)
    key, static = id(model), StaticGraph(graphdef)
    _SPLITS[key] = (weakref.ref(model, lambda _: _SPLITS.pop(key, None)), children, static, state)
    return static, state


def split_model(model: UIO2Model):
    """`nnx.split(model)`, traversing the graph once per model instead of on every call.

    The state holds the model's own Variable objects, so in-place parameter updates
    (`nnx.update`, optimizer steps, checkpoint loading into the model) are seen without a new
    split. Replacing a top-level submodule is detected (its identity is checked); deeper surgery
    on the module tree needs `forget_split(model)`."""
    static, state = _split(model)
    return static.graphdef, state


def forget_split(model: UIO2Model) -> None:
    _SPLITS.pop(id(model), None)


@functools.partial(jax.jit, static_argnames=("static", "audio"))
def _history_latents(static, state, frames, masks, audio: bool = False):
    return nnx.merge(static.graphdef, state).history_latents(frames, masks, audio=audio)


def history_latents(model: UIO2Model, frames, masks, *, audio: bool = False) -> jax.Array:
    """Image-history frames [N, s, s, 3] + patch masks [N, P] -> latents [N, n, d] (compiled; an
    agent computes a frame's latents once, when the frame enters its history). `audio`: clips, as
    `audio_history_latents`."""
    static, state = _split(model)
    return _history_latents(static, state, frames, masks, audio)


def audio_history_latents(model: UIO2Model, spectrograms, masks) -> jax.Array:
    """Audio-history clips [N, 256, 128, 1] (`preprocess_audio_input`) + patch masks [N, P] ->
    latents [N, n, d], the `audio_history_latents` input (compiled; computed once per clip)."""
    return history_latents(model, spectrograms, masks, audio=True)


# a decode step's linears packed (the cross-attention keys/values come from the cache): packed name ->
# the kernels concatenated on their outputs, in order
STEP_PACKS = {
    "self_attention.qkv": ("self_attention.query", "self_attention.key", "self_attention.value"),
    "self_attention.out": ("self_attention.out",),
    "encoder_decoder_attention.query": ("encoder_decoder_attention.query",),
    "encoder_decoder_attention.out": ("encoder_decoder_attention.out",),
    "mlp.wi": ("mlp.wi_0", "mlp.wi_1"),
    "mlp.wo": ("mlp.wo",),
}


class StepWeights(NamedTuple):
    """A decode step's weights packed, in the compute dtype: per decoder layer {`STEP_PACKS` name: kernel
    [outputs, inputs]}, and the generated modality's output embedding transposed [d, V]. A copy of the
    decoder's step weights (large in float32: about 1.5 GB), made once per model."""

    layers: tuple[dict[str, jax.Array], ...]
    logits_t: jax.Array


_STEP_WEIGHTS: dict[int, tuple] = {}


def _path(module, path: str):
    for name in path.split("."):
        module = getattr(module, name)
    return module


def step_weights(model: UIO2Model, modality: str, packed: bool) -> StepWeights | None:
    """The model's decode-step weights packed (None where `packed` is False). Kept per model and packed
    again when a kernel changes (an optimizer step or a checkpoint load replaces its array)."""
    if not packed:
        return None
    layers = model.decoder.layers()
    sources = [_path(layer, p).kernel[...] for layer in layers for ps in STEP_PACKS.values() for p in ps]
    sources.append(model.token_embedder(modality).embedding[...])
    hit = _STEP_WEIGHTS.get(id(model))
    if (
        hit is not None
        and hit[0]() is model
        and hit[1] == modality
        and all(a is b for a, b in zip(hit[2], sources, strict=True))
    ):
        return hit[3]
    dtype, kernels, per_layer = model.cfg.compute_dtype, iter(sources), []
    for _ in layers:
        packs = {}
        for name, paths in STEP_PACKS.items():
            parts = [next(kernels) for _ in paths]
            packs[name] = jnp.concatenate(parts, axis=1).T.astype(dtype)
        per_layer.append(packs)
    weights = StepWeights(tuple(per_layer), sources[-1].T.astype(dtype))
    mid = id(model)
    ref = weakref.ref(model, lambda _: _STEP_WEIGHTS.pop(mid, None))
    _STEP_WEIGHTS[mid] = (ref, modality, sources, weights)
    return weights


def use_step_weights(model: UIO2Model, weights: StepWeights | None, modality: str) -> UIO2Model:
    """Points a merged (traced) copy of the model at `weights`: its step linears become `PackedDense`
    parts, its `modality` logits read the transposed table. Same outputs, up to summation order."""
    if weights is None:
        return model
    for layer, packs in zip(model.decoder.layers(), weights.layers, strict=True):
        for name, paths in STEP_PACKS.items():
            shared: dict = {}
            for i, path in enumerate(paths):
                owner, attr = path.rsplit(".", 1)
                setattr(_path(layer, owner), attr, PackedDense(packs[name], i, len(paths), shared))
    model.logit_tables_t = {modality: weights.logits_t}
    return model


class Generated(NamedTuple):
    tokens: jax.Array  # [B, max_new_tokens], 0 after EOS
    log_prob: jax.Array  # [B] sum of log-probabilities of the generated tokens (incl. EOS)
    length: jax.Array  # [B] number of generated tokens up to and including EOS
    calls: jax.Array | None = None  # decoder forward calls made (greedy/sample; beam leaves None)


def _filter_logits(logits: jax.Array, cfg: DecodeConfig) -> jax.Array:
    logits = logits / cfg.temperature
    if cfg.top_k:
        kth = jax.lax.top_k(logits, cfg.top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, NEG, logits)
    if cfg.top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
        cum = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
        # keep the smallest set whose mass reaches top_p (always at least one token)
        cutoff_idx = jnp.sum(cum < cfg.top_p, axis=-1, keepdims=True)
        cutoff = jnp.take_along_axis(sorted_logits, cutoff_idx, axis=-1)
        logits = jnp.where(logits < cutoff, NEG, logits)
    return logits


def _step_log_probs(model, enc, modality, token, index, cache, guidance, batch):
    logits, cache = model.decode_step(enc, modality, token, index, cache)
    logp = jax.nn.log_softmax(logits, axis=-1)
    if guidance is not None:
        cond, uncond = logp[:batch], logp[batch:]
        logp = (1 + guidance) * cond - guidance * uncond
    return logp, cache


def _mask(logp, allowed):
    return logp if allowed is None else jnp.where(allowed, logp, NEG)


def _code_mask(model: UIO2Model, modality: str) -> jax.Array | None:
    """Image/audio targets may only be codebook tokens (code + 2): never BOS, [MASK] or the padding
    rows the vocabulary was rounded up with (the official port clips such ids after the fact).
    Text may be anything but BOS/PAD (0), which is never a generated token."""
    if modality == "text":
        return jnp.arange(model.token_embedder("text").num_embeddings) != PAD_ID
    n_embed = (model.cfg.image_vqgan if modality == "image" else model.cfg.audio_vqgan).n_embed
    ids = jnp.arange(model.token_embedder(modality).num_embeddings)
    return (ids >= 2) & (ids < n_embed + 2)


def _sample_loop(model, enc, modality, cfg, rng, constraint, batch):
    guidance = cfg.guidance_scale
    cache = model.init_cache(enc, modality, cfg.max_new_tokens)
    n = cfg.max_new_tokens
    cstate = constraint.init(batch) if constraint is not None else None
    codes = _code_mask(model, modality)

    def body(i, carry):
        tokens, last, done, total, length, cache, cstate, rng = carry
        feed = jnp.concatenate([last, last]) if guidance is not None else last
        logp, cache = _step_log_probs(model, enc, modality, feed, i, cache, guidance, batch)
        logp = _mask(_mask(logp, codes), constraint.allowed(cstate) if constraint is not None else None)
        if cfg.method == "greedy":
            tok = jnp.argmax(logp, axis=-1)
        else:
            rng, sub = jax.random.split(rng)
            tok = jax.random.categorical(sub, _filter_logits(logp, cfg), axis=-1)
        tok = jnp.where(done, PAD_ID, tok).astype(jnp.int32)
        total = total + jnp.where(done, 0.0, jnp.take_along_axis(logp, tok[:, None], axis=-1)[:, 0])
        length = length + (~done).astype(jnp.int32)
        if constraint is not None:
            cstate = constraint.update(cstate, tok)
        if cfg.stop_at_eos:
            done = done | (tok == EOS_ID)
        tokens = tokens.at[:, i].set(tok)
        return tokens, tok, done, total, length, cache, cstate, rng

    def cond(carry):
        i, (_, _, done, *_) = carry
        return (i < n) & ~jnp.all(done)  # every row finished: stop instead of running to n

    init = (
        jnp.zeros((batch, n), jnp.int32),
        jnp.zeros((batch,), jnp.int32),
        jnp.zeros((batch,), bool),
        jnp.zeros((batch,), jnp.float32),
        jnp.zeros((batch,), jnp.int32),
        cache,
        cstate,
        rng,
    )
    calls, (tokens, _, _, total, length, *_) = jax.lax.while_loop(
        cond, lambda c: (c[0] + 1, body(c[0], c[1])), (jnp.zeros((), jnp.int32), init)
    )
    return Generated(tokens, total, length, calls)


def _chunk_log_probs(model, enc, modality, chunk, index, cache, guidance, batch, rope_table):
    """Feed `chunk` [B, R] at positions index..index+R-1 -> log-probabilities [B, R, V] of the
    token after each position (one multi-token forward; R = 1 is an ordinary step)."""
    r = chunk.shape[1]
    x = model.embed_target_tokens(modality, chunk)
    table = jax.lax.dynamic_slice_in_dim(rope_table, index, r, axis=0)
    rope = jnp.broadcast_to(table[None], (x.shape[0], r, table.shape[-1])).astype(model.cfg.compute_dtype)
    hidden, cache = model.decoder.step(x, rope, index, cache, enc.mask[:, None, None, :])
    logp = jax.nn.log_softmax(model.logits(modality, hidden), axis=-1)
    if guidance is not None:
        cond, uncond = logp[:batch], logp[batch:]
        logp = (1 + guidance) * cond - guidance * uncond
    return logp, cache


def _forced_run(dfa: TokenDFA, state, codes, length: int, stop_at_eos: bool):
    """Up to `length` tokens the grammar forces from `state` (exactly one allowed token each; EOS
    is left to the model call so that finishing stays one code path) -> tokens [B, length]
    (PAD past the run), run lengths [B], the states after each prefix [B, length + 1]."""
    toks, states, alive, m = [], [state], jnp.ones(state.shape, bool), jnp.zeros(state.shape, jnp.int32)
    for _ in range(length):
        allowed = dfa.allowed(state) & codes[None]
        tok = jnp.argmax(allowed, axis=-1).astype(jnp.int32)
        take = alive & (allowed.sum(-1) == 1)
        if stop_at_eos:
            take = take & (tok != EOS_ID)
        toks.append(jnp.where(take, tok, PAD_ID))
        m = m + take.astype(jnp.int32)
        state = jnp.where(take, dfa.update(state, tok), state)
        states.append(state)
        alive = take
    return jnp.stack(toks, 1), m, jnp.stack(states, 1)


def _jump_loop(model, enc, modality, cfg, constraint: TokenDFA, batch):
    """Greedy decoding under a token automaton, feeding each grammar-forced run together with the
    token before it in one forward call. Tokens equal token-by-token greedy decoding: a forced
    token is the only one the mask leaves, so it is also the argmax there. Two compiled shapes
    (1 and `jump_forward` positions) whatever the runs' lengths."""
    guidance = cfg.guidance_scale
    n, r = cfg.max_new_tokens, cfg.jump_forward
    limit = model.max_target_length(modality)
    if n > limit:
        raise ValueError(f"max_length {n} exceeds the {modality} target limit {limit}")
    # room for the padded tail of the last chunk; positions past the real tokens are garbage that
    # the next chunk overwrites before any query can see it
    cache = model.decoder.init_cache(enc.encoded, enc.rope, n + r)
    rope_table = jnp.pad(model.target_rope_table(modality), ((0, r), (0, 0)))
    codes = _code_mask(model, modality)
    rows = jnp.arange(batch)

    def feed(chunk, i, cache, width):
        c = chunk[:, :width]
        c = jnp.concatenate([c, c]) if guidance is not None else c
        logp, cache = _chunk_log_probs(model, enc, modality, c, i, cache, guidance, batch, rope_table)
        return jnp.pad(logp, ((0, 0), (0, r - width), (0, 0))) if width < r else logp, cache

    def body(carry):
        i, calls, tokens, last, done, total, length, cache, state = carry
        forced, m, states = _forced_run(constraint, state, codes, r - 1, cfg.stop_at_eos)
        m = jnp.where(done, r - 1, m)  # finished rows never hold the others back
        mc = jnp.minimum(jnp.min(m), n - 1 - i)  # forced tokens fed this call, shared by all rows
        chunk = jnp.where(done[:, None], PAD_ID, jnp.concatenate([last[:, None], forced], 1))
        logp, cache = jax.lax.cond(
            mc == 0,
            lambda c: feed(chunk, i, c, 1),
            lambda c: feed(chunk, i, c, r),
            cache,
        )  # [B, r, V]
        pos = jnp.arange(r)
        forced_lp = jnp.take_along_axis(logp[:, : r - 1], forced[..., None], axis=-1)[..., 0]
        forced_lp = jnp.sum(jnp.where(pos[None, : r - 1] < mc, forced_lp, 0.0), axis=1)
        free = logp[:, mc]  # [B, V] the distribution after the run
        st = states[rows, mc]
        tok = jnp.argmax(_mask(_mask(free, codes), constraint.allowed(st)), axis=-1).astype(jnp.int32)
        tok = jnp.where(done, PAD_ID, tok)
        free_lp = jnp.take_along_axis(free, tok[:, None], axis=-1)[:, 0]
        total = total + jnp.where(done, 0.0, forced_lp + free_lp)
        length = length + jnp.where(done, 0, mc + 1)
        out = jnp.where(pos[None] < mc, jnp.pad(forced, ((0, 0), (0, 1))), 0)
        out = jnp.where(pos[None] == mc, tok[:, None], out)
        out = jnp.where(done[:, None], PAD_ID, out)
        tokens = jax.lax.dynamic_update_slice_in_dim(tokens, out, i, axis=1)
        state = constraint.update(st, tok)
        if cfg.stop_at_eos:
            done = done | (tok == EOS_ID)
        return i + mc + 1, calls + 1, tokens, tok, done, total, length, cache, state

    def cond(carry):
        i, done = carry[0], carry[4]
        return (i < n) & ~jnp.all(done)

    zeros = jnp.zeros((batch,), jnp.int32)
    init = (
        jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), jnp.zeros((batch, n + r), jnp.int32), zeros,
        jnp.zeros((batch,), bool), jnp.zeros((batch,), jnp.float32), zeros, cache, constraint.init(batch),
    )  # fmt: skip
    _, calls, tokens, _, _, total, length, *_ = jax.lax.while_loop(cond, body, init)
    return Generated(tokens[:, :n], total, length, calls)


def _repeat_tree(tree, k: int):
    return jax.tree_util.tree_map(lambda x: jnp.repeat(x, k, axis=0) if getattr(x, "ndim", 0) else x, tree)


def _beam_loop(model, enc, modality, cfg, constraint, batch):
    """Beam search; the encoder output and the cross keys/values stay one per row, shared by its
    beams (only the self-attention cache is reordered when beams are chosen)."""
    k, n = cfg.num_beams, cfg.max_new_tokens
    limit = model.max_target_length(modality)
    if n > limit:
        raise ValueError(f"max_length {n} exceeds the {modality} target limit {limit}")
    if cfg.beam_share_encoder:
        cache = model.decoder.init_cache(enc.encoded, enc.rope, n, beams=k)
    else:
        enc = Encoded(*(_repeat_tree(x, k) for x in enc))
        cache = model.decoder.init_cache(enc.encoded, enc.rope, n)
    cstate = _repeat_tree(constraint.init(batch), k) if constraint is not None else None
    vocab = model.token_embedder(modality).num_embeddings
    scores = jnp.tile(jnp.array([0.0] + [NEG] * (k - 1), jnp.float32), (batch, 1))
    codes = _code_mask(model, modality)

    def body(i, carry):
        seqs, last, finished, scores, lengths, cache, cstate = carry
        logp, cache = _step_log_probs(model, enc, modality, last, i, cache, None, batch * k)
        logp = _mask(_mask(logp, codes), constraint.allowed(cstate) if constraint is not None else None)
        fin = finished.reshape(-1)
        pad_only = jnp.full((vocab,), NEG).at[PAD_ID].set(0.0)
        logp = jnp.where(fin[:, None], pad_only[None], logp).reshape(batch, k, vocab)
        cand = (scores[:, :, None] + logp).reshape(batch, k * vocab)
        scores, flat = jax.lax.top_k(cand, k)
        beam, tok = flat // vocab, (flat % vocab).astype(jnp.int32)
        rows = (jnp.arange(batch)[:, None] * k + beam).reshape(-1)
        seqs = jnp.take_along_axis(seqs, beam[:, :, None], axis=1).at[:, :, i].set(tok)
        was_done = jnp.take_along_axis(finished, beam, axis=1)
        lengths = jnp.take_along_axis(lengths, beam, axis=1) + (~was_done).astype(jnp.int32)
        finished = was_done | ((tok == EOS_ID) & cfg.stop_at_eos)
        if cfg.beam_share_encoder:
            cache = [{**c, "k": c["k"][rows], "v": c["v"][rows]} for c in cache]
        else:
            cache = jax.tree_util.tree_map(lambda x: x[rows], cache)
        if constraint is not None:
            cstate = constraint.update(gather_state(cstate, rows), tok.reshape(-1))
        return seqs, tok.reshape(-1), finished, scores, lengths, cache, cstate

    init = (
        jnp.zeros((batch, k, n), jnp.int32),
        jnp.zeros((batch * k,), jnp.int32),
        jnp.zeros((batch, k), bool),
        scores,
        jnp.zeros((batch, k), jnp.int32),
        cache,
        cstate,
    )
    seqs, _, _, scores, lengths, *_ = jax.lax.fori_loop(0, n, body, init)
    norm = ((5.0 + lengths) / 6.0) ** cfg.length_penalty
    best = jnp.argmax(scores / norm, axis=1)
    pick = lambda x: jnp.take_along_axis(x, best[:, None], axis=1)[:, 0]  # noqa: E731
    return Generated(
        jnp.take_along_axis(seqs, best[:, None, None], axis=1)[:, 0], pick(scores), pick(lengths)
    )


def _pad_text_to(batch: Mapping[str, jax.Array], length: int) -> dict[str, jax.Array]:
    out = dict(batch)
    if "text" in out and out["text"].shape[1] < length:
        out["text"] = jnp.pad(out["text"], ((0, 0), (0, length - out["text"].shape[1])))
    return out


@functools.partial(jax.jit, static_argnames=("static", "modality", "cfg"))
def _generate(static, state, batch, negative_batch, modality, cfg, rng, constraint, weights=None):
    model = use_step_weights(nnx.merge(static.graphdef, state), weights, modality)
    b = next(iter(batch.values())).shape[0]
    if cfg.guidance_scale is not None:
        if set(batch) != set(negative_batch):
            raise ValueError("the negative batch must have the same inputs as the batch (for guidance)")
        lt = max(
            batch.get("text", jnp.zeros((b, 0))).shape[1],
            negative_batch.get("text", jnp.zeros((b, 0))).shape[1],
        )
        pos, neg = _pad_text_to(batch, lt), _pad_text_to(negative_batch, lt)
        batch = {key: jnp.concatenate([pos[key], neg[key]]) for key in pos}
    enc = model.encode(batch)
    if cfg.method == "beam":
        return _beam_loop(model, enc, modality, cfg, constraint, b)
    if cfg.method == "greedy" and cfg.jump_forward > 1 and isinstance(constraint, TokenDFA):
        return _jump_loop(model, enc, modality, cfg, constraint, b)
    return _sample_loop(model, enc, modality, cfg, rng, constraint, b)


def generate(
    model: UIO2Model,
    batch: Mapping[str, jax.Array],
    modality: str = "text",
    cfg: DecodeConfig = DecodeConfig(),
    *,
    rng: jax.Array | None = None,
    constraint=None,
    negative_batch: Mapping[str, jax.Array] | None = None,
) -> Generated:
    """Generate `cfg.max_new_tokens` tokens of `modality` for every row of `batch` (compiled)."""
    model.token_embedder(modality)  # validates the modality name
    if cfg.guidance_scale is not None and negative_batch is None:
        raise ValueError(
            "guidance_scale needs a negative_batch (e.g. the prompt 'An image of a random picture.')"
        )
    if cfg.method == "beam" and cfg.guidance_scale is not None:
        raise ValueError("beam search with classifier-free guidance is not supported")
    if cfg.method == "sample" and rng is None:
        raise ValueError("sampling needs an rng key")
    static, state = _split(model)
    rng = rng if rng is not None else jax.random.key(0)
    neg = dict(negative_batch) if negative_batch is not None else None
    weights = step_weights(model, modality, cfg.packs(model))
    return _generate(static, state, dict(batch), neg, modality, cfg, rng, constraint, weights)


@functools.partial(jax.jit, static_argnames=("static", "modality"))
def _score(static, state, batch, options, modality):
    model = nnx.merge(static.graphdef, state)
    b, o, length = options.shape
    enc = model.encode(batch)
    enc = Encoded(*(_repeat_tree(x, o) for x in enc))
    flat = options.reshape(b * o, length)
    logits = model.decode(enc, {modality: flat})[modality]
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), flat[..., None], axis=-1)[..., 0]
    mask = (flat != PAD_ID).astype(jnp.float32)
    return (jnp.sum(logp * mask, axis=-1) / jnp.maximum(mask.sum(-1), 1.0)).reshape(b, o)


def score_options(
    model: UIO2Model, batch: Mapping[str, jax.Array], options: jax.Array, modality: str = "text"
) -> jax.Array:
    """Mean token log-likelihood of each answer option [B, O, L] (0-padded, EOS included) -> [B, O].

    The answer is the argmax (the official code takes the argmin of the mean NLL)."""
    if options.ndim != 3:
        raise ValueError(f"options must be [batch, num_options, length], got shape {options.shape}")
    static, state = _split(model)
    return _score(static, state, dict(batch), jnp.asarray(options, jnp.int32), modality)
