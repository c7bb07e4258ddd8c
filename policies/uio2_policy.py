"""The UIO2 policy: observations + multimodal prompt -> one constrained decode -> an env action.

Per row (episode) it keeps an `EpisodeHistory`; each step builds the example (prompt with
`<image_history_i>` references, main image, history frames, audio), runs the model once for all
rows, decodes under the action codec's grammar, and maps tokens to actions. An output that still
fails to parse becomes the codec's declared fallback and is counted in `last_info`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from policies import grounding
from policies.base import TaskSpec
from policies.codecs import DiscreteActionCodec, VimaActionCodec, vima_noop_action
from policies.history import EpisodeHistory
from policies.prompting import (
    InputBuilder,
    audio_segment,
    audio_wave,
    chw_to_hwc,
    host_frames,
    mono,
    pointnav_example,
    pointnav_text,
    vima_example,
    vima_prompt_images,
    vima_text,
)
from uio2_core import decoding
from uio2_core.constraints import TokenDFA
from uio2_core.decoding import DecodeConfig, generate, history_latents
from uio2_core.decoding import _split as split_model_static
from uio2_core.device_audio import prepare_audio
from uio2_core.device_preprocessing import checked_frame, prepare_frames
from uio2_core.model import UIO2Model
from uio2_core.vocab import Vocabulary

HISTORIES = ("image_history", "audio_history")  # the histories whose latents a policy can keep
# what is kept for an audio clip with no valid patch (digital silence): the model masks such a clip
# out, so nothing is computed for it
_SILENT = "silent"


def _pool_write(model, key: str, pool, inputs: tuple, slots, size: int, patch: int) -> jax.Array:
    """New history items' perceiver latents written to `pool[slots]` (out-of-range slots: padding,
    dropped). Items: uint8 frames [N, h, w, 3], preprocessed here; or (`key` "audio_history") clips'
    spectrograms [N, 256, 128, 1] and patch masks [N, P]."""
    if key == "audio_history":
        latents = model.history_latents(*inputs, audio=True)
    else:
        latents = model.history_latents(*prepare_frames(*inputs, size, patch))
    return pool.at[slots].set(latents.astype(pool.dtype), mode="drop")


@functools.partial(jax.jit, static_argnames=("static", "key", "sizes"))
def _write_latents(static, state, key: str, pool, inputs, slots, sizes: tuple[int, int]) -> jax.Array:
    return _pool_write(nnx.merge(static.graphdef, state), key, pool, inputs, slots, *sizes)


@functools.partial(jax.jit, static_argnames=("static", "cfg", "sizes"))
def act_step(static, state, pools, inputs, new, where, valid, cfg, sizes, rng, constraint, weights):
    """The policy's step in one compiled call (`UIO2Policy._fused_step`; arguments from
    `UIO2Policy.step_arguments`) -> (`Generated`, the pools with the new items' latents). `pools`,
    `new`, `where`, `valid`: one each per kept history (`HISTORIES`)."""
    size, history_size, patch = sizes
    model = nnx.merge(static.graphdef, state)
    batch, pools = dict(inputs), dict(pools)
    if "image_mask" not in batch:
        batch["image"], batch["image_mask"] = prepare_frames(batch["image"], size, patch)
    if "audio_wave" in batch:  # the rows' raw 4.08 s segments: the log-mel computed here
        batch["audio"], batch["audio_mask"] = prepare_audio(batch.pop("audio_wave"))
    for key in pools:
        pools[key] = _pool_write(model, key, pools[key], *new[key], history_size, patch)
        batch[f"{key}_latents"], batch[f"{key}_latents_mask"] = pools[key][where[key]], valid[key]
    return decoding._generate(static, state, batch, None, "text", cfg, rng, constraint, weights), pools


def _same_shape(items: list) -> list[list]:
    """`items` (their last element a frame) grouped by the frame's shape and dtype, order kept."""
    groups: dict[tuple, list] = {}
    for item in items:
        groups.setdefault((item[-1].shape, np.asarray(item[-1]).dtype), []).append(item)
    return list(groups.values())


def _prepare(frames: list[np.ndarray], size: int, patch: int) -> tuple[jax.Array, jax.Array]:
    """`prepare_frames` of frames of any sizes, in their order: one call per distinct size."""
    frames = [checked_frame(f) for f in frames]
    groups = _same_shape([(k, f) for k, f in enumerate(frames)])
    if len(groups) == 1:
        return prepare_frames(np.stack(frames), size, patch)
    parts = [prepare_frames(np.stack([f for _, f in g]), size, patch) for g in groups]
    order = np.argsort([k for g in groups for k, _ in g])
    return jnp.concatenate([p[0] for p in parts])[order], jnp.concatenate([p[1] for p in parts])[order]


def task_family(action_space: gym.Space) -> str:
    """Which prompt format and codec an action space calls for."""
    if isinstance(action_space, gym.spaces.Dict) and "pose0_position" in action_space.spaces:
        return "vima"
    if isinstance(action_space, gym.spaces.Discrete):
        return "pointnav"
    raise ValueError(f"the UIO2 policy has no action codec for the action space {action_space}")


@functools.partial(jax.jit, static_argnames=("static",))
def _answer_margin(static, state, batch, yes, no) -> jax.Array:
    """Per row, the first answer token's `yes` logit minus its `no` logit (policies/grounding.py)."""
    model = nnx.merge(static.graphdef, state)
    enc = model.encode_sequence(model.embed_inputs(batch))
    start = jnp.zeros((batch["text"].shape[0], 1), jnp.int32)  # teacher forcing: only BOS is read
    logits = model.decode(enc, {"text": start}, {"text": jnp.ones_like(start, bool)})["text"][:, 0]
    return logits[:, yes] - logits[:, no]


@dataclass
class _Grounded:
    """A VIMA prompt whose objects the model finds in the scene at every step."""

    prompt: str
    assets: dict[str, Any]
    objects: list[grounding.PromptObject]
    robot_ids: list[int]


@dataclass
class _Row:
    family: str
    codec: Any
    history: EpisodeHistory
    prompt_text: str = ""
    fallbacks: int = 0
    grounded: _Grounded | None = None


class UIO2Policy:
    """UIO2 as a Gymnasium agent (any checkpoint; CPU or accelerator)."""

    name = "uio2"

    def __init__(
        self,
        model: UIO2Model,
        vocab: Vocabulary,
        *,
        decode: DecodeConfig | None = None,
        text_len: int | None = None,  # None: sized from each batch's tasks (sized_text_len)
        max_frames: int = 4,  # history slots: the released default (num_frames 4); training uses the same
        template: int = 0,
        view: str = "front",
        seed: int = 0,
        cache_inputs: bool = True,  # per episode: prompt token ids and history latents computed once
        # with `cache_inputs`, audio-history clips' latents too (False: every clip's spectrogram and
        # latents again at every step; kept to measure what the audio cache saves)
        cache_audio: bool = True,
        prompt_crop: bool = False,  # VIMA prompt images cropped to their object (as the run trained)
        # images resized, padded and normalised in compiled code (`prepare_frames`: the host only
        # stacks uint8 frames); False: the host numpy path, kept to measure it against
        device_preprocessing: bool = True,
        ground_objects: bool = False,  # VIMA prompt objects found by the model, named by position
    ):
        self.model, self.vocab = model, vocab
        self.decode_cfg = decode or DecodeConfig(method="greedy")
        self.template, self.view, self.prompt_crop = template, view, prompt_crop
        self.ground_objects = ground_objects
        self.questions_asked = 0  # grounding questions scored (one per prompt object and scene object)
        self._answers = tuple(vocab.encode(grounding.ANSWERS[same])[0] for same in (True, False))
        if not 1 <= max_frames <= model.cfg.image_history.max_frames:
            raise ValueError(
                f"max_frames must be in 1..{model.cfg.image_history.max_frames}, got {max_frames}"
            )
        self.max_frames = max_frames
        self.text_len = text_len
        self.cache_inputs, self.cache_audio = cache_inputs, cache_audio
        self.kept_histories: tuple[str, ...] = ()  # `HISTORIES` given as kept latents (set per batch)
        self.device_preprocessing = device_preprocessing
        self.rng = jax.random.key(seed)
        self.rows: list[_Row] = []
        # one codec per family for the policy's life, so that grammar tables are built once
        self.codecs = {"vima": VimaActionCodec(vocab), "pointnav": DiscreteActionCodec(vocab)}
        self._stacked: tuple[tuple[int, ...], TokenDFA] | None = None
        self._blank: dict[str, jax.Array] = {}  # per history: the latents of an empty slot
        self._pools: dict[str, jax.Array] = {}  # per history: kept latents [1 + rows * max_frames, n, d]
        self.frames_encoded = 0  # history frames whose latents were computed (each once per episode)
        self.audio_clips_encoded = 0  # the same for audio-history clips
        self._rng_zero = jax.random.key(0)
        self.last_infos: list[dict[str, Any]] = []

    # -- protocol --
    def reset(self, task: TaskSpec) -> None:
        self.reset_batch([task])

    def act(self, obs: dict[str, Any], info: dict | None = None) -> Any:
        return self.act_batch([obs], [info or {}])[0]

    select_action = act  # LeRobot's name for the same step

    @property
    def last_info(self) -> dict[str, Any]:
        return self.last_infos[0] if self.last_infos else {}

    def row_info(self, row: int) -> dict[str, Any]:
        return dict(self.last_infos[row]) if row < len(self.last_infos) else {}

    def reset_batch(self, tasks: Sequence[TaskSpec]) -> None:
        self.rows = [self._new_row(t) for t in tasks]
        self.last_infos = [{} for _ in tasks]
        families = {r.family for r in self.rows}
        if len(families) > 1:
            raise ValueError(f"one batch must hold one task family, got {sorted(families)}")
        text_len = self.text_len or max(self._sized_text_len(r) for r in self.rows)
        with_audio = "audio" in getattr(tasks[0].observation_space, "spaces", {})
        self.builder = InputBuilder(
            self.model.cfg, self.vocab, text_len, self.max_frames, with_audio=with_audio,
            cache_tokens=self.cache_inputs, host_preprocessing=not self.device_preprocessing,
        )  # fmt: skip
        kept = HISTORIES if with_audio and self.cache_audio else HISTORIES[:1]
        self.kept_histories = kept if self.cache_inputs else ()

    def _sized_text_len(self, row: _Row) -> int:
        """Tokens for this task's prompt with every history slot filled by the longest action the
        codec writes, rounded up to a multiple of 32 (few distinct shapes, so few compilations)."""
        past = row.history.past_slots
        if row.family == "vima":
            action = row.codec.to_text(row.codec.encode(vima_noop_action())).split(": ", 1)[-1]
            text = vima_text(row.prompt_text, len(row.history.prompt_images), [action] * past, self.template)
        else:
            action = max(row.codec.words, key=lambda a: len(self.vocab.encode(a)))
            text = pointnav_text(99.99, -3.14, row.codec.action_space_text(), [action] * past, self.template)
        limit = self.model.cfg.transformer.encoder_max_text_length
        return min(limit, 32 * -(-(len(self.vocab.encode(text)) + 1) // 32))

    def reset_row(self, row: int, task: TaskSpec) -> None:
        self.rows[row] = self._new_row(task)
        self.last_infos[row] = {}

    def _new_row(self, task: TaskSpec) -> _Row:
        family = task_family(task.action_space)
        history = EpisodeHistory(self.max_frames)
        if family == "vima":
            grounded = None
            prompt = task.prompt
            if self.ground_objects:
                objects = grounding.prompt_objects(prompt, task.prompt_assets, self.view, self.prompt_crop)
                robot_ids = (task.extra.get("meta_info") or {}).get("robot_components") or ()
                grounded = _Grounded(prompt, task.prompt_assets, objects, [int(i) for i in robot_ids])
                # until the first step finds them: the centre (same length, for sizing text_len)
                centre = grounding.WORKSPACE_CENTRE
                prompt = grounding.located_prompt(prompt, {o.name: centre for o in objects})
            text, images = vima_prompt_images(prompt, task.prompt_assets, self.view, self.prompt_crop)
            history.reset(images)
            return _Row(family, self.codecs["vima"], history, text, grounded=grounded)
        return _Row(family, self.codecs["pointnav"], history)

    def _example(self, row: _Row, obs: dict[str, Any]):
        if row.family == "vima":
            return vima_example(row.prompt_text, obs, row.history, self.template, self.view)
        codec: DiscreteActionCodec = row.codec
        return pointnav_example(
            obs, row.history, codec.action_space_text(), self.template, list(row.history.audio)
        )

    def _grammar(self) -> tuple[TokenDFA, int]:
        """The batch's automaton (device tables, cached per step) and the decode length it needs."""
        grammars = [r.codec.grammar(r.history.step) for r in self.rows]
        max_len = max(r.codec.decode_length() for r in self.rows)  # one length a codec: no recompiles
        if len(grammars) == 1:
            return grammars[0], max_len
        key = tuple(id(g) for g in grammars)
        if self._stacked is None or self._stacked[0] != key:
            self._stacked = (key, TokenDFA.stack(grammars))
        return self._stacked[1], max_len

    def _history_latents(self, key: str = "image_history") -> tuple[jax.Array, jax.Array]:
        """The rows' history (`key`: frames, or audio clips) as perceiver latents [B, T, n, d] + mask
        [B, T]. An item's latents are computed once, in the first step that sees it (all rows' new
        items in one call, padded to a power of two so that few shapes compile), and kept until the
        item leaves the history or the episode ends: with `device_preprocessing` in a slot of the
        policy's latents pool on the device (the history keeps the slot number), else as an array in
        the row's history."""
        if self.device_preprocessing:
            todo, where, valid = self._pool_layout(key)
            self._write_frames(key, todo)
            return self._pools[key][where], jnp.asarray(valid)
        audio = key == "audio_history"
        todo = [
            (row.history, slot, item)
            for row in self.rows
            for slot, (item, kept) in enumerate(
                zip(row.history.history_items(audio), row.history.history_latents(audio), strict=True)
            )
            if kept is None
        ]
        if todo:
            x, masks = self._host_inputs(key, [item for *_, item in todo])
            n = 1 << (len(todo) - 1).bit_length()
            x, padded = (
                np.concatenate([a, np.zeros((n - len(todo), *a.shape[1:]), a.dtype)]) for a in (x, masks)
            )
            latents = history_latents(self.model, jnp.asarray(x), jnp.asarray(padded), audio=audio)
            self._count(key, len(todo))
            for k, (history, slot, _) in enumerate(todo):
                history.set_latent(slot, latents[k] if masks[k].any() else _SILENT, audio)
        blank = self._blank_latents(key)
        kept = [r.history.history_latents(audio) for r in self.rows]
        valid = [[t < len(row) and row[t] is not _SILENT for t in range(self.max_frames)] for row in kept]
        flat = [
            row[t] if ok else blank for row, oks in zip(kept, valid, strict=True) for t, ok in enumerate(oks)
        ]
        latents = jnp.concatenate(flat).reshape(len(kept), self.max_frames, *blank.shape)
        return latents, jnp.asarray(np.array(valid))

    def _latent_inputs(self) -> dict[str, jax.Array]:
        """The batch's kept histories (`kept_histories`) as `<history>_latents` and `_latents_mask`."""
        out = {}
        for key in self.kept_histories:
            out[f"{key}_latents"], out[f"{key}_latents_mask"] = self._history_latents(key)
        return out

    def _host_inputs(self, key: str, items: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """History items preprocessed on the host -> model inputs [N, ...] + patch masks [N, P]."""
        if key == "audio_history":
            clips = [audio_segment(c) for c in items]
            return np.stack([x for x, _ in clips]), np.stack([m for _, m in clips])
        cfg = self.model.cfg
        return host_frames(items, cfg.image_history_size, cfg.image_vit.patch_size)

    def _blank_latents(self, key: str) -> jax.Array:
        """The latents [n, d] of an empty `key` history slot (zeros; masked out)."""
        cfg = self.model.cfg
        p = cfg.audio_history if key == "audio_history" else cfg.image_history
        blank = self._blank.get(key)
        if blank is None or blank.dtype != cfg.compute_dtype:
            blank = self._blank[key] = jnp.zeros((p.num_latents, cfg.transformer.d_model), cfg.compute_dtype)
        return blank

    def _count(self, key: str, n: int) -> None:
        if key == "audio_history":
            self.audio_clips_encoded += n
        else:
            self.frames_encoded += n

    def _pool_layout(self, key: str = "image_history") -> tuple[list[tuple], np.ndarray, np.ndarray]:
        """Gives each `key` history item (frame, clip) without latents a free slot of its pool (slot 0
        stays zeros, for empty history slots and silent clips). Returns the new items as (slot,
        *inputs) (inputs: a uint8 frame, or a clip's spectrogram and patch mask), where [B, T] (each
        history slot's pool slot) and valid [B, T]."""
        audio = key == "audio_history"
        rows, t = len(self.rows), self.max_frames
        size = 1 + rows * t  # every history slot of every row, and the blank
        if key not in self._pools or self._pools[key].shape[0] != size:
            blank = self._blank_latents(key)
            self._pools[key] = jnp.zeros((size, *blank.shape), blank.dtype)
            for row in self.rows:  # a new pool: every item's latents are computed again
                for slot in range(len(row.history.history_latents(audio))):
                    row.history.set_latent(slot, None, audio)
        used = {v for r in self.rows for v in r.history.history_latents(audio) if v is not None}
        free = (i for i in range(1, size) if i not in used)
        where, valid = np.zeros((rows, t), np.int32), np.zeros((rows, t), bool)
        todo: list[tuple] = []
        for b, row in enumerate(self.rows):
            items, kept = row.history.history_items(audio), row.history.history_latents(audio)
            for k, (item, slot) in enumerate(zip(items, kept, strict=True)):
                if slot is None:
                    inputs = audio_segment(item) if audio else (checked_frame(item),)
                    slot = _SILENT if audio and not inputs[1].any() else next(free)
                    row.history.set_latent(k, slot, audio)
                    self._count(key, 1)
                    if slot is not _SILENT:
                        todo.append((slot, *inputs))
                if slot is not _SILENT:
                    where[b, k], valid[b, k] = slot, True
        return todo, where, valid

    def _write_frames(self, key: str, todo: list[tuple]) -> None:
        """Latents of (slot, *inputs) items into the `key` pool: items of one shape in one compiled
        call, padded to a power of two (padding: an out-of-range slot, dropped)."""
        for group in _same_shape(todo):
            n = 1 << (len(group) - 1).bit_length()
            self._write_pool(key, *self._stack_items(key, group, n, group[0][1:]))

    def _stack_items(self, key: str, items: list[tuple], n: int, like: tuple) -> tuple[tuple, np.ndarray]:
        """(slot, *inputs) items as n stacked rows (inputs shaped as `like`) and their slots; the rows
        past the items: zeros at an out-of-range slot (dropped)."""
        inputs = tuple(np.zeros((n, *x.shape), x.dtype) for x in like)
        slots = np.full(n, self._pools[key].shape[0], np.int32)
        for k, (slot, *xs) in enumerate(items):
            slots[k] = slot
            for stack, x in zip(inputs, xs, strict=True):
                stack[k] = x
        return inputs, slots

    def _write_pool(self, key: str, inputs: tuple, slots: np.ndarray) -> None:
        cfg = self.model.cfg
        static, state = split_model_static(self.model)
        sizes = (cfg.image_history_size, cfg.image_vit.patch_size)
        self._pools[key] = _write_latents(static, state, key, self._pools[key], inputs, slots, sizes)

    def model_inputs(self, examples: list) -> dict[str, jax.Array]:
        """The examples' model arrays on the device, history frames (clips) left out where their latents
        are kept (`kept_histories`). With `device_preprocessing` the host tokenises and stacks the uint8
        frames; resizing, padding and normalisation run compiled (`prepare_frames`)."""
        if not self.device_preprocessing:
            arrays = self.builder.collate(examples, self.kept_histories)
            return {k: jnp.asarray(v) for k, v in arrays.items()}
        cfg, patch = self.model.cfg, self.model.cfg.image_vit.patch_size
        batch = {"text": jnp.asarray(self.builder.text_ids(examples))}
        images = [e.image for e in examples]
        batch["image"], batch["image_mask"] = _prepare(images, cfg.image_input_size, patch)
        if "image_history" not in self.kept_histories:
            size, slots = cfg.image_history_size, self.max_frames
            frames = [f for e in examples for f in e.history]
            images, masks = _prepare(frames, size, patch) if frames else (None, None)
            where = np.full((len(examples), slots), len(frames))  # index of each slot's frame, or the blank
            k = 0
            for row, e in enumerate(examples):
                where[row, : len(e.history)] = np.arange(k, k + len(e.history))
                k += len(e.history)
            blank = jnp.zeros((1, size, size, 3), jnp.float32), jnp.zeros((1, (size // patch) ** 2), bool)
            images = blank[0] if images is None else jnp.concatenate([images, blank[0]])
            masks = blank[1] if masks is None else jnp.concatenate([masks, blank[1]])
            batch["image_history"], batch["image_history_mask"] = images[where], masks[where]
        if self.builder.with_audio:
            waves = np.stack([audio_wave(e.audio) for e in examples])
            batch["audio"], batch["audio_mask"] = prepare_audio(waves)
            batch.update({k: jnp.asarray(v) for k, v in self._audio_history_arrays(examples).items()})
        return batch

    def _audio_history_arrays(self, examples: list) -> dict[str, np.ndarray]:
        """The audio-history clips' host spectrograms where their latents are not kept, else nothing."""
        if "audio_history" in self.kept_histories:
            return {}
        rows = [self.builder.audio_history_arrays(e) for e in examples]
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

    def _fused_step(self, examples: list, cfg: DecodeConfig, rng: jax.Array, grammar) -> jax.Array:
        """One compiled call: the main images and the new history frames preprocessed, the new frames'
        (clips') latents written to the pools, the history gathered from them, encode and constrained
        decode."""
        out, pools = act_step(*self.step_arguments(examples, cfg, rng, grammar))
        self._pools.update(pools)
        return out.tokens

    def step_arguments(self, examples: list, cfg: DecodeConfig, rng: jax.Array, grammar) -> tuple:
        """`act_step`'s arguments for the examples (host arrays: uint8 frames, spectrograms, token ids,
        pool slots), per kept history: the pool, the step's new items (`_step_items`), where, valid."""
        mcfg = self.model.cfg
        inputs: dict[str, Any] = {"text": self.builder.text_ids(examples)}
        images = [checked_frame(e.image) for e in examples]
        if len({(im.shape, im.dtype) for im in images}) == 1:
            inputs["image"] = np.stack(images)  # preprocessed in the step
        else:
            size, patch = mcfg.image_input_size, mcfg.image_vit.patch_size
            inputs["image"], inputs["image_mask"] = _prepare(images, size, patch)
        new, where, valid = {}, {}, {}
        for key in self.kept_histories:
            todo, where[key], valid[key] = self._pool_layout(key)
            if key == "audio_history":
                (at, am), cells = mcfg.audio_input_size, mcfg.encoder_max_audio_length
                like = (np.zeros((at, am, 1), np.float32), np.zeros(cells, bool))
            else:
                like = (images[0],)
            new[key] = self._step_items(key, todo, like)
        if self.builder.with_audio:  # raw segments: the spectrograms are computed in the step
            inputs["audio_wave"] = np.stack([audio_wave(e.audio) for e in examples])
            inputs.update(self._audio_history_arrays(examples))
        static, state = split_model_static(self.model)
        sizes = (mcfg.image_input_size, mcfg.image_history_size, mcfg.image_vit.patch_size)
        pools = {key: self._pools[key] for key in self.kept_histories}
        weights = decoding.step_weights(self.model, "text", cfg.packs(self.model))
        return static, state, pools, inputs, new, where, valid, cfg, sizes, rng, grammar, weights

    def _step_items(self, key: str, todo: list[tuple], like: tuple) -> tuple[tuple, np.ndarray]:
        """The new items `act_step` takes: exactly one per row, shaped as `like` (the main image, a
        spectrogram: what a step adds; padding: zeros whose latents are dropped), so that it compiles
        once; other new items (the prompt images, in an episode's first step) are written first."""
        shape = [(a.shape, a.dtype) for a in like]
        taken = [k for k, (_, *xs) in enumerate(todo) if [(x.shape, x.dtype) for x in xs] == shape]
        taken = taken[-len(self.rows) :]  # the newest: what the step just pushed
        self._write_frames(key, [x for j, x in enumerate(todo) if j not in set(taken)])
        return self._stack_items(key, [todo[j] for j in taken], len(self.rows), like)

    def _ground(self, observations: Sequence[dict]) -> list[dict[str, list[float]] | None]:
        """For each grounded row: every prompt object asked against every scene object (all rows' questions
        in one model call, padded to a power of two), the best-scoring object per prompt object chosen
        (`grounding.choose`), and the row's prompt text written with their positions. Returns per row
        the chosen positions by placeholder (None for rows that are not grounded)."""
        todo = []
        for row, obs in zip(self.rows, observations, strict=True):
            if row.grounded is not None:
                scene = grounding.top_view_objects(obs, row.grounded.robot_ids)
                todo.append((row, scene, [grounding.question(o.image, s.crop)
                                          for o in row.grounded.objects for s in scene]))  # fmt: skip
        questions = [q for *_, qs in todo for q in qs]
        margins = self._answer_margins(questions) if questions else np.zeros(0)
        out: dict[int, dict[str, list[float]]] = {}
        k = 0
        for row, scene, qs in todo:
            g = row.grounded
            scores = margins[k : k + len(qs)].reshape(len(g.objects), len(scene))
            k += len(qs)
            chosen = grounding.choose(scores) if scene else []
            where = {o.name: ((scene[i].x, scene[i].y) if scene else grounding.WORKSPACE_CENTRE)
                     for o, i in zip(g.objects, chosen or [0] * len(g.objects), strict=True)}  # fmt: skip
            located = grounding.located_prompt(g.prompt, where)
            row.prompt_text = vima_prompt_images(located, g.assets, self.view, self.prompt_crop)[0]
            out[id(row)] = {name: [float(v) for v in xy] for name, xy in where.items()}
        return [out.get(id(row)) for row in self.rows]

    def _answer_margins(self, questions: list) -> np.ndarray:
        """`yes` minus `no` for each grounding question (rows padded to a power of two: few compiles)."""
        n = 1 << (len(questions) - 1).bit_length()
        arrays = self.builder.collate([*questions, *[questions[-1]] * (n - len(questions))])
        yes, no = self._answers
        static, state = split_model_static(self.model)
        batch = {k: jnp.asarray(v) for k, v in arrays.items()}
        self.questions_asked += len(questions)
        return np.asarray(_answer_margin(static, state, batch, yes, no))[: len(questions)]

    def act_batch(self, observations: Sequence[dict], infos: Sequence[dict] | None = None) -> list[Any]:
        if len(observations) != len(self.rows):
            raise ValueError(
                f"{len(observations)} observations for {len(self.rows)} episodes (call reset_batch)"
            )
        start = time.perf_counter()
        found = self._ground(observations)
        examples = [self._example(r, o) for r, o in zip(self.rows, observations, strict=True)]
        grammar, max_len = self._grammar()
        cfg = replace(self.decode_cfg, max_new_tokens=max_len)  # frozen: equal configs share a compile
        sub = self._rng_zero
        if cfg.method == "sample":  # greedy and beam search use no randomness
            self.rng, sub = jax.random.split(self.rng)
        if self.device_preprocessing and self.cache_inputs:
            tokens = np.asarray(self._fused_step(examples, cfg, sub, grammar))
        else:
            batch = self.model_inputs(examples)
            batch.update(self._latent_inputs())
            out = generate(self.model, batch, "text", cfg, rng=sub, constraint=grammar)
            tokens = np.asarray(out.tokens)
        latency = time.perf_counter() - start
        actions = []
        for i, (row, obs) in enumerate(zip(self.rows, observations, strict=True)):
            decoded = row.codec.decode(tokens[i], row.history.step)
            row.fallbacks += int(not decoded.ok)
            text = row.codec.to_text(tokens[i])
            self.last_infos[i] = {
                "decoded_text": text, "fallback": not decoded.ok, "fallbacks": row.fallbacks,
                "decision_ms": 1000 * latency / len(self.rows),
            }  # fmt: skip
            if found[i] is not None:
                self.last_infos[i]["grounded"] = found[i]
            frame = chw_to_hwc(obs["rgb"][self.view] if row.family == "vima" else obs["rgb"])
            audio = mono(obs["audio"]) if "audio" in obs else None
            row.history.push(frame, text.split(": ", 1)[-1] if row.family == "vima" else text, audio)
            actions.append(decoded.action)
        return actions
