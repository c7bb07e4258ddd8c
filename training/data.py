"""Recorded trajectories -> UIO2 training examples, built exactly as the policy builds its inputs.

Each recorded step becomes (inputs, targets): the inputs come from the same prompting code and
history rules as `policies.uio2_policy` (the episode is replayed through an `EpisodeHistory`),
the targets from the action codec's `encode` of the recorded action. So what training teaches is
exactly what the policy decodes.

Batches are a pure function of (seed, position): batch k samples datasets by weight and steps
uniformly with an RNG seeded by (seed, k). Resuming at position k needs nothing but k.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from policies.codecs import DiscreteActionCodec, VimaActionCodec
from policies.history import EpisodeHistory
from policies.prompting import InputBuilder, mono, pointnav_example, vima_example, vima_prompt_images
from training.dataset import open_dataset
from training.features import action_from_row
from uio2_core.config import UIO2Config
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
        rgb = asset.get("rgb", {}) if isinstance(asset, dict) else {}
        out[name] = {"rgb": {v: np.asarray(img) for v, img in rgb.items()}}
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
                 prompt_crop: bool = False):  # fmt: skip
        self.cfg, self.vocab = cfg, vocab
        self.text_len, self.target_len, self.max_frames = text_len, target_len, max_frames
        self.template, self.view, self.prompt_crop = template, view, prompt_crop

    def episode(self, ep: dict[str, np.ndarray], extra: dict[str, Any], family: str) -> EpisodeExamples:
        with_audio = "observation.audio" in ep
        builder = InputBuilder(self.cfg, self.vocab, self.text_len, self.max_frames, with_audio=with_audio)
        history = EpisodeHistory(self.max_frames)
        if family == "vima":
            codec: Any = VimaActionCodec(self.vocab)
            prompt, images = vima_prompt_images(str(ep["task"][0]), _prompt_assets(extra), self.view,
                                                self.prompt_crop)
            history.reset(images)
        else:
            codec = DiscreteActionCodec(self.vocab)
        rows, targets = [], []
        for t in range(len(ep["action"])):
            obs = _observation(family, ep, t)
            action = action_from_row(ep["action"][t])
            if family == "vima":
                example = vima_example(prompt, obs, history, self.template, self.view)
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


class TrainingData:
    """Weighted mixture of recorded datasets -> deterministic batches (`batch_at(position)`)."""

    def __init__(self, paths: Sequence[str], builder: ExampleBuilder, batch_size: int, *, seed: int = 0,
                 weights: Sequence[float] | None = None, skip_bad_episodes: bool = False):  # fmt: skip
        if not paths:
            raise DatasetError("no dataset given")
        self.builder, self.batch_size, self.seed = builder, batch_size, seed
        self.datasets = [open_dataset(p) for p in paths]
        self.paths = list(paths)
        w = np.asarray(weights if weights is not None else [1.0] * len(paths), np.float64)
        if w.shape != (len(paths),) or (w < 0).any() or w.sum() <= 0:
            raise DatasetError(f"weights {list(w)} must be one non-negative number per dataset, not all zero")
        self.weights = w / w.sum()
        self.families = [_family(d.features) for d in self.datasets]
        if len(set(self.families)) > 1:
            raise DatasetError(f"datasets mix env families {self.families}; train one family per run")
        self.steps: list[list[tuple[int, int]]] = []  # per dataset: (episode, t)
        for d, path in zip(self.datasets, self.paths, strict=True):
            steps = []
            for e in range(d.num_episodes):
                try:
                    length = int(d.episode_row(e)["length"])
                    d.episode(e)  # read it once: fail early on missing or corrupt files
                except Exception as err:
                    if not skip_bad_episodes:
                        raise DatasetError(f"{path}: episode {e} cannot be read: {err}") from err
                    log.warning("skipping episode %d of %s: %s", e, path, err)
                    continue
                steps += [(e, t) for t in range(length)]
            if not steps:
                raise DatasetError(f"{path} has no usable steps")
            self.steps.append(steps)

    @lru_cache(maxsize=32)  # noqa: B019  (instances live for a whole training run)
    def _episode(self, dataset: int, episode: int) -> EpisodeExamples:
        d = self.datasets[dataset]
        return self.builder.episode(d.episode(episode), d.episode_extra(episode), self.families[dataset])

    @property
    def num_steps(self) -> int:
        return sum(len(s) for s in self.steps)

    def batch_at(self, position: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, position])
        rows = []
        for _ in range(self.batch_size):
            k = int(rng.choice(len(self.datasets), p=self.weights))
            e, t = self.steps[k][int(rng.integers(len(self.steps[k])))]
            ex = self._episode(k, e)
            rows.append(({key: v[t] for key, v in ex.inputs.items()}, ex.targets[t]))
        batch = {key: np.stack([r[0][key] for r in rows]) for key in rows[0][0]}
        batch["targets/text"] = np.stack([r[1] for r in rows])
        return batch
