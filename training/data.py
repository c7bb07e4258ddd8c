"""Recorded trajectories -> UIO2 training examples, built exactly as the policy builds its inputs.

Each recorded step becomes (inputs, targets): the inputs come from the same prompting code and
history rules as `policies.uio2_policy` (the episode is replayed through an `EpisodeHistory`),
the targets from the action codec's `encode` of the recorded action. So what training teaches is
exactly what the policy decodes.

Batches are a pure function of (seed, position): batch k samples datasets by weight and steps
uniformly with an RNG seeded by (seed, k). Resuming at position k needs nothing but k.

Every step is indexed once, when the data is opened: its prompt tokens and target tokens are stored
(int32 arrays), its main image and history frames as references to the recorded uint8 frames (never
copies). A frame is resized and normalised (the policy's preprocessing, `prepare_frames`) the first
time a batch uses it and kept, up to `frame_cache_mb`; after that a row is a few array copies, so
sampling steps uniformly over any number of episodes costs the same per row. Memory: the recorded
frames (uint8) of the views the model sees, (text_len + target_len) * 4 bytes a step
(`TrainingData.memory_bytes`, logged when the data is opened), plus at most `frame_cache_mb` of
preprocessed frames.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from policies import grounding
from policies.codecs import DiscreteActionCodec, VimaActionCodec
from policies.history import EpisodeHistory
from policies.prompting import (
    SEGMENT_SAMPLES,
    Example,
    InputBuilder,
    mono,
    pointnav_example,
    vima_example,
    vima_prompt_images,
)
from training.dataset import open_dataset
from training.features import action_from_row
from uio2_core.config import UIO2Config
from uio2_core.device_preprocessing import prepare_frames_np
from uio2_core.vocab import EOS_ID, Vocabulary

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A recorded dataset cannot be used for training (missing or corrupt episode, wrong features)."""


def _family(features: dict[str, Any]) -> str:
    if "observation.images.front" in features:
        return "vima"
    if "observation.images.rgb" in features and "observation.pointgoal_with_gps_compass" in features:
        return "pointnav"
    raise DatasetError(f"cannot tell the env family from the features {sorted(features)}")


def _observation(family: str, ep: dict[str, np.ndarray], t: int) -> dict[str, Any]:
    """The env-style observation of step t, as the policy saw it."""
    if family == "vima":
        views = [k.split(".")[-1] for k in ep if k.startswith("observation.images.")]
        obs: dict[str, Any] = {"rgb": {v: ep[f"observation.images.{v}"][t].transpose(2, 0, 1) for v in views}}
        segm = [k.split(".")[-1] for k in ep if k.startswith("observation.segm.")]
        if segm:
            obs["segm"] = {v: ep[f"observation.segm.{v}"][t][..., 0] for v in segm}
        if "observation.ee" in ep:
            obs["ee"] = int(ep["observation.ee"][t].reshape(-1)[0])
        return obs
    obs = {"rgb": ep["observation.images.rgb"][t],
           "pointgoal_with_gps_compass": ep["observation.pointgoal_with_gps_compass"][t]}  # fmt: skip
    if "observation.audio" in ep:
        obs["audio"] = ep["observation.audio"][t]
    return obs


def _prompt_assets(extra: dict[str, Any]) -> dict[str, Any]:
    """Prompt assets from the episode sidecar, in the env's layout ({name: {"rgb": {view: CHW}}})."""
    assets = extra.get("prompt_assets") or {}
    out: dict[str, Any] = {}
    for name, asset in assets.items():
        asset = asset if isinstance(asset, dict) else {}
        out[name] = {"rgb": {v: np.asarray(img) for v, img in asset.get("rgb", {}).items()}}
        if "placeholder_type" in asset:  # which object it shows: what grounding labels come from
            out[name]["placeholder_type"] = asset["placeholder_type"]
        if isinstance(asset.get("segm"), dict) and "obj_info" in asset["segm"]:
            out[name]["segm"] = {"obj_info": asset["segm"]["obj_info"]}
    return out


class VimaPrompt:
    """A recorded episode's prompt: fixed text and images, or (grounded runs) the text with each
    object placeholder replaced at every step by the matching scene object's table position, found
    from the asset's and the scene's object names (`policies.grounding`); the policy finds it with
    the model instead. An object hidden at a step (under another) is where it was last seen."""

    def __init__(self, prompt: str, assets: dict[str, Any], meta_info: dict[str, Any],
                 builder: ExampleBuilder):  # fmt: skip
        self.prompt, self.assets, self.builder = prompt, assets, builder
        self.objects: list[grounding.PromptObject] = []
        if builder.ground_objects:
            self.objects = grounding.prompt_objects(prompt, assets, builder.view, builder.prompt_crop)
        self.identities = grounding.scene_identities(meta_info)
        self.last: dict[str, tuple[float, float]] = {}  # where each object was last seen
        self.robot_ids = [int(i) for i in meta_info.get("robot_components") or ()]
        # prompt images: the placeholders that are not located (all of them without grounding)
        names = {o.name for o in self.objects}
        unlocated = grounding.located_prompt(prompt, {n: grounding.WORKSPACE_CENTRE for n in names})
        self.text, self.images = vima_prompt_images(unlocated, assets, builder.view, builder.prompt_crop)

    def scene(self, obs: dict[str, Any]) -> list[Any]:
        return grounding.top_view_objects(obs, self.robot_ids)

    def at(self, obs: dict[str, Any]) -> str:
        """The prompt text of the step observing `obs`."""
        if not self.objects:
            return self.text
        scene = self.scene(obs)
        for obj in self.objects:  # an object hidden at this step (under another): where it was last seen
            found = grounding.matches(obj, scene, self.identities)
            if found:
                self.last[obj.name] = (scene[found[0]].x, scene[found[0]].y)
        positions = {o.name: self.last.get(o.name, grounding.WORKSPACE_CENTRE) for o in self.objects}
        text, _ = vima_prompt_images(grounding.located_prompt(self.prompt, positions), self.assets,
                                     self.builder.view, self.builder.prompt_crop)  # fmt: skip
        return text

    def questions(self, obs: dict[str, Any]) -> list[tuple[Example, bool]]:
        """The grounding questions of one scene: each prompt object against every scene object, the
        matching ones repeated so that half the answers are yes."""
        scene = self.scene(obs)
        out: list[tuple[Example, bool]] = []
        for obj in self.objects:
            found = set(grounding.matches(obj, scene, self.identities))
            others = [o for i, o in enumerate(scene) if i not in found]
            if not found or not others:
                continue
            same = [scene[i] for i in sorted(found)]
            out += [(grounding.question(obj.image, o.crop), False) for o in others]
            out += [(grounding.question(obj.image, same[k % len(same)].crop), True)
                    for k in range(len(others))]  # fmt: skip
        return out


@dataclass
class EpisodeExamples:
    """All steps of one recorded episode as model arrays + target tokens."""

    inputs: dict[str, np.ndarray]  # each [T, ...]
    targets: np.ndarray  # [T, target_len]


class ExampleBuilder:
    """Replays recorded episodes through the policy's prompting to make training examples."""

    def __init__(self, cfg: UIO2Config, vocab: Vocabulary, *, text_len: int = 128, target_len: int = 32,
                 max_frames: int = 4, template: int = 0, view: str = "front",
                 prompt_crop: bool = False, ground_objects: bool = False):  # fmt: skip
        """`ground_objects`: VIMA prompts name their objects by table position and the grounding
        questions of `policies.grounding` are made from each episode's first step (`VimaPrompt.questions`)."""
        self.cfg, self.vocab = cfg, vocab
        self.text_len, self.target_len, self.max_frames = text_len, target_len, max_frames
        self.template, self.view, self.prompt_crop = template, view, prompt_crop
        self.ground_objects = ground_objects

    def vima_prompt(self, ep: dict[str, np.ndarray], extra: dict[str, Any]) -> VimaPrompt:
        """The episode's prompt as the policy sees it (`VimaPrompt.at` gives a step's text)."""
        return VimaPrompt(str(ep["task"][0]), _prompt_assets(extra), extra.get("meta_info") or {}, self)

    def episode(self, ep: dict[str, np.ndarray], extra: dict[str, Any], family: str) -> EpisodeExamples:
        """Every step of `ep` as full model arrays, replayed step by step as the policy sees them: the
        reference that `TrainingData`'s indexed steps are tested (and benchmarked) against."""
        with_audio = "observation.audio" in ep
        builder = InputBuilder(self.cfg, self.vocab, self.text_len, self.max_frames, with_audio=with_audio)
        history = EpisodeHistory(self.max_frames)
        if family == "vima":
            codec: Any = VimaActionCodec(self.vocab)
            prompt = self.vima_prompt(ep, extra)
            history.reset(prompt.images)
        else:
            codec = DiscreteActionCodec(self.vocab)
        rows, targets = [], []
        for t in range(len(ep["action"])):
            obs = _observation(family, ep, t)
            action = action_from_row(ep["action"][t])
            if family == "vima":
                example = vima_example(prompt.at(obs), obs, history, self.template, self.view)
            else:
                example = pointnav_example(obs, history, codec.action_space_text(), self.template,
                                           list(history.audio))  # fmt: skip
            ids = [*codec.encode(action, t), EOS_ID]
            if len(ids) > self.target_len:
                raise DatasetError(
                    f"action at step {t} needs {len(ids)} target tokens, target_len={self.target_len}"
                )
            rows.append(builder.arrays(example))
            targets.append(np.pad(ids, (0, self.target_len - len(ids))))
            text = codec.to_text(ids)
            frame = obs["rgb"][self.view].transpose(1, 2, 0) if family == "vima" else obs["rgb"]
            history.push(frame, text.split(": ", 1)[-1] if family == "vima" else text,
                         mono(obs["audio"]) if "audio" in obs else None)  # fmt: skip
        inputs = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
        return EpisodeExamples(inputs, np.stack(targets).astype(np.int32))


@dataclass(frozen=True)
class _Step:
    """One recorded step as references: what `InputBuilder.arrays` needs besides the tokens."""

    image: np.ndarray
    history: tuple[np.ndarray, ...]
    audio: tuple[np.ndarray, ...] | None  # mono clips whose concatenation's tail is the audio input
    audio_history: tuple[np.ndarray, ...]

    def example(self) -> Example:
        audio = None if self.audio is None else np.concatenate(self.audio)[-SEGMENT_SAMPLES:]
        return Example("", self.image, list(self.history), audio, list(self.audio_history))


@dataclass
class _IndexedDataset:
    """Every step of one dataset: tokens stacked, frames referenced (see the module docstring)."""

    steps: list[tuple[int, int]]  # (episode, t)
    records: list[_Step]
    tokens: np.ndarray  # [N, text_len] int32
    targets: np.ndarray  # [N, target_len] int32
    input_keys: frozenset[str]
    shortened: int = 0  # prompts whose oldest history steps were left out to fit text_len
    truncated: int = 0  # prompts cut at text_len (the instruction itself too long)


def _index_questions(builder: ExampleBuilder, prompt: VimaPrompt, ep: dict[str, np.ndarray],
                     ) -> tuple[list[_Step], list[np.ndarray], list[np.ndarray]]:  # fmt: skip
    """The grounding questions of an episode's first scene (`VimaPrompt.questions`) as indexed steps."""
    inputs = InputBuilder(builder.cfg, builder.vocab, builder.text_len, builder.max_frames)
    answers = {same: [*builder.vocab.encode(word), EOS_ID] for same, word in grounding.ANSWERS.items()}
    records, tokens, targets = [], [], []
    for example, same in prompt.questions(_observation("vima", ep, 0)):
        records.append(_Step(example.image, tuple(example.history), None, ()))
        tokens.append(inputs.fitted_tokens(example.text)[0])
        targets.append(np.pad(answers[same], (0, builder.target_len - len(answers[same]))))
    return records, tokens, targets


def _index_episode(builder: ExampleBuilder, ep: dict[str, np.ndarray], prompt: VimaPrompt | None, family: str,
                   ) -> tuple[list[_Step], list[np.ndarray], list[np.ndarray], int, int]:  # fmt: skip
    """`ExampleBuilder.episode`'s replay, keeping references instead of preprocessed arrays."""
    history = EpisodeHistory(builder.max_frames)
    inputs = InputBuilder(builder.cfg, builder.vocab, builder.text_len, builder.max_frames)
    if family == "vima":
        codec: Any = VimaActionCodec(builder.vocab)
        assert prompt is not None
        history.reset(prompt.images)
    else:
        codec = DiscreteActionCodec(builder.vocab)
    records, tokens, targets, shortened, truncated = [], [], [], 0, 0
    for t in range(len(ep["action"])):
        obs = _observation(family, ep, t)
        if family == "vima":
            example = vima_example(prompt.at(obs), obs, history, builder.template, builder.view)
        else:
            example = pointnav_example(obs, history, codec.action_space_text(), builder.template,
                                       list(history.audio))  # fmt: skip
        ids = [*codec.encode(action_from_row(ep["action"][t]), t), EOS_ID]
        if len(ids) > builder.target_len:
            raise DatasetError(
                f"action at step {t} needs {len(ids)} target tokens, target_len={builder.target_len}"
            )
        text, skip, cut = inputs.fitted_tokens(example.text, example.shorten, example.steps)
        shortened, truncated = shortened + bool(skip), truncated + bool(cut)
        clip = mono(obs["audio"]) if "audio" in obs else None
        audio = None if clip is None else (*history.audio, clip)
        records.append(_Step(example.image, tuple(example.history), audio, tuple(history.audio)))
        tokens.append(text)
        targets.append(np.pad(ids, (0, builder.target_len - len(ids))))
        action_text = codec.to_text(ids)
        frame = obs["rgb"][builder.view].transpose(1, 2, 0) if family == "vima" else obs["rgb"]
        history.push(frame, action_text.split(": ", 1)[-1] if family == "vima" else action_text, clip)
    return records, tokens, targets, shortened, truncated


class _FrameCache:
    """Preprocessed frames by the identity of the recorded array they come from (the step records keep
    every one alive), until `max_bytes` are held; frames beyond that are preprocessed each time."""

    def __init__(self, max_bytes: int) -> None:
        self.items: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
        self.max_bytes, self.bytes = max_bytes, 0

    def get(self, frame: np.ndarray, kind: str, make: Any) -> tuple[np.ndarray, np.ndarray]:
        key = (id(frame), kind)
        hit = self.items.get(key)
        if hit is None:
            hit = make(frame)
            size = hit[0].nbytes + hit[1].nbytes
            if self.bytes + size <= self.max_bytes:
                self.items[key], self.bytes = hit, self.bytes + size
        return hit


# of a grounded tabletop dataset's draws, its grounding questions: what takes longest to learn
# (docs/tabletop_learning.md); copying the named positions into the action is learnt in a few hundred steps
GROUNDING_SHARE = 0.8


class TrainingData:
    """Weighted mixture of recorded datasets -> deterministic batches (`batch_at(position)`).

    Datasets of different env families (PointNav and tabletop) mix when they give the same model
    inputs (all with audio or all without)."""

    def __init__(self, paths: Sequence[str], builder: ExampleBuilder, batch_size: int, *, seed: int = 0,
                 weights: Sequence[float] | None = None, skip_bad_episodes: bool = False,
                 frame_cache_mb: float = 2048, grounding_share: float = GROUNDING_SHARE,
                 tabletop_first: int = 0):  # fmt: skip
        """`grounding_share` (with `builder.ground_objects`): the share of a tabletop dataset's draws that
        are its grounding questions, the rest its steps. `tabletop_first`: the first batches draw only
        from the tabletop datasets (their steps and questions): with PointNav mixed in from the start the
        grounding question stayed at chance (docs/tabletop_learning.md, fourth session)."""
        if not 0 <= grounding_share < 1:
            raise DatasetError(f"grounding_share must be in [0, 1), got {grounding_share}")
        if not paths:
            raise DatasetError("no dataset given")
        self.builder, self.batch_size, self.seed = builder, batch_size, seed
        self.datasets = [open_dataset(p) for p in paths]
        self.paths = list(paths)
        w = np.asarray(weights if weights is not None else [1.0] * len(paths), np.float64)
        if w.shape != (len(paths),) or (w < 0).any() or w.sum() <= 0:
            raise DatasetError(f"weights {list(w)} must be one non-negative number per dataset, not all zero")
        self.weights = w / w.sum()
        self.tabletop_first = tabletop_first
        self.families = [_family(d.features) for d in self.datasets]
        self._questions: dict[int, _IndexedDataset] = {}
        self.indexed = [self._index(k, skip_bad_episodes) for k in range(len(self.datasets))]
        if builder.ground_objects:  # each tabletop dataset's questions: a source of their own
            for k, questions in self._questions.items():
                self.indexed.append(questions)
                self.paths.append(f"{paths[k]}#grounding")
                share = self.weights[k] * grounding_share
                self.weights = np.append(self.weights, share)
                self.weights[k] -= share
        # which sources (entries of `indexed`) are tabletop steps or grounding questions
        self.tabletop_sources = np.array([f == "vima" for f in self.families] + [True] * len(self._questions))
        keys = {ix.input_keys for ix in self.indexed}
        if len(keys) > 1:
            raise DatasetError(
                f"datasets {self.paths} give different model inputs "
                f"({[sorted(ix.input_keys) for ix in self.indexed]}): mix ones all with audio or all without"
            )
        self._audio = InputBuilder(builder.cfg, builder.vocab, builder.text_len, builder.max_frames, True)
        self.frames = _FrameCache(int(frame_cache_mb * 1e6))
        log.info("training data: %d steps indexed, %.1f MB", self.num_steps, self.memory_bytes / 1e6)

    def _index(self, k: int, skip_bad_episodes: bool) -> _IndexedDataset:
        d, path, family = self.datasets[k], self.paths[k], self.families[k]
        steps, records, tokens, targets, shortened, truncated = [], [], [], [], 0, 0
        questions: list[list] = [[], [], [], []]  # steps, records, tokens, targets
        for e in range(d.num_episodes):
            try:
                length = int(d.episode_row(e)["length"])
                ep, extra = d.episode(e), d.episode_extra(e)
            except Exception as err:
                if not skip_bad_episodes:
                    raise DatasetError(f"{path}: episode {e} cannot be read: {err}") from err
                log.warning("skipping episode %d of %s: %s", e, path, err)
                continue
            prompt = self.builder.vima_prompt(ep, extra) if family == "vima" else None
            r, tok, tgt, s, c = _index_episode(self.builder, ep, prompt, family)
            if self.builder.ground_objects and prompt is not None:
                q = _index_questions(self.builder, prompt, ep)
                questions[0] += [(e, 0)] * len(q[0])
                for part, new in zip(questions[1:], q, strict=True):
                    part += new
            steps += [(e, t) for t in range(length)]
            records += r
            tokens += tok
            targets += tgt
            shortened, truncated = shortened + s, truncated + c
        if not steps:
            raise DatasetError(f"{path} has no usable steps")
        if shortened or truncated:
            log.warning(
                "%s: %d of %d prompts are over text_len %d: %d lost their oldest history steps, %d were "
                "cut at the end (the policy does the same at evaluation with the same text_len)",
                path, shortened + truncated, len(steps), self.builder.text_len, shortened, truncated,
            )  # fmt: skip
        keys = frozenset({"text", "image", "image_mask", "image_history", "image_history_mask"}
                         | ({"audio", "audio_mask", "audio_history", "audio_history_mask"}
                            if records[0].audio is not None else set()))  # fmt: skip
        if self.builder.ground_objects and family == "vima" and questions[0]:
            self._questions[k] = _IndexedDataset(questions[0], questions[1], np.stack(questions[2]),
                                                 np.stack(questions[3]).astype(np.int32), keys)  # fmt: skip
        elif self.builder.ground_objects and family == "vima":  # e.g. prompts that show whole scenes
            log.warning("%s: no grounding questions (no prompt object of the assets' obj_info is in a scene)",
                        path)  # fmt: skip
        return _IndexedDataset(steps, records, np.stack(tokens), np.stack(targets).astype(np.int32), keys,
                               shortened, truncated)  # fmt: skip

    @property
    def steps(self) -> list[list[tuple[int, int]]]:
        """Per dataset, its (episode, t) steps in sampling order."""
        return [ix.steps for ix in self.indexed]

    @property
    def num_steps(self) -> int:
        return sum(len(ix.steps) for ix in self.indexed)

    @property
    def memory_bytes(self) -> int:
        """Bytes held for the examples: token arrays plus each distinct recorded array referenced."""
        seen: dict[int, int] = {}
        total = 0
        for ix in self.indexed:
            total += ix.tokens.nbytes + ix.targets.nbytes
            for r in ix.records:
                for a in (r.image, *r.history, *(r.audio or ()), *r.audio_history):
                    base = a if a.base is None else a.base
                    seen[id(base)] = base.nbytes
        return total + sum(seen.values())

    def text_report(self) -> list[dict[str, Any]]:
        """Per dataset: prompts over text_len (shortened by history steps / cut at the end)."""
        return [{"data": p, "steps": len(ix.steps), "shortened": ix.shortened, "truncated": ix.truncated}
                for p, ix in zip(self.paths, self.indexed, strict=True)]  # fmt: skip

    def _main_image(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.builder.cfg
        image, mask = prepare_frames_np([image], cfg.image_input_size, cfg.image_vit.patch_size)
        return image[0], mask[0]

    def _history_frame(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.builder.cfg  # one frame alone: each frame of a history is preprocessed on its own
        image, mask = prepare_frames_np([frame], cfg.image_history_size, cfg.image_vit.patch_size)
        return image[0], mask[0]

    def example(self, dataset: int, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(model arrays, target tokens) of the `index`-th step of `dataset`: what `InputBuilder.arrays`
        makes of the policy's example at that step (tests/test_training_data.py checks it)."""
        ix, cfg, slots = self.indexed[dataset], self.builder.cfg, self.builder.max_frames
        record = ix.records[index]
        image, image_mask = self.frames.get(record.image, "image", self._main_image)
        size, cells = cfg.image_history_size, (cfg.image_history_size // cfg.image_vit.patch_size) ** 2
        history = np.zeros((slots, size, size, 3), np.float32)
        history_mask = np.zeros((slots, cells), bool)
        for slot, frame in enumerate(record.history):
            history[slot], history_mask[slot] = self.frames.get(frame, "history", self._history_frame)
        arrays = {"text": ix.tokens[index], "image": image, "image_mask": image_mask,
                  "image_history": history, "image_history_mask": history_mask}  # fmt: skip
        if record.audio is not None:
            arrays.update(self._audio.audio_arrays(record.example()))
        return arrays, ix.targets[index]

    def batch_at(self, position: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, position])
        weights = self.weights
        if position < self.tabletop_first and self.tabletop_sources.any():
            weights = np.where(self.tabletop_sources, weights, 0.0)
            weights = weights / weights.sum()
        rows = []
        for _ in range(self.batch_size):
            k = int(rng.choice(len(self.indexed), p=weights))
            rows.append(self.example(k, int(rng.integers(len(self.indexed[k].steps)))))
        return stack_rows(rows)


def stack_rows(rows: Sequence[tuple[dict[str, np.ndarray], np.ndarray]]) -> dict[str, np.ndarray]:
    """(model arrays, target tokens) rows (`TrainingData.example`) -> one batch."""
    batch = {key: np.stack([r[0][key] for r in rows]) for key in rows[0][0]}
    batch["targets/text"] = np.stack([r[1] for r in rows])
    return batch
