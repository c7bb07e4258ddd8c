"""Observations + task -> UIO2 examples (prompt text, main image, history, audio) -> model arrays.

Used by the policy at every step and by training to build inputs from recorded steps, so both
see exactly the same inputs. Templates live in `templates.json`, not in code.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from policies.history import EpisodeHistory
from uio2_core.config import UIO2Config
from uio2_core.device_preprocessing import prepare_frames_np
from uio2_core.preprocessing import (
    AUDIO_FRAMES,
    AUDIO_PATCH,
    AUDIO_SAMPLE_RATE,
    N_MELS,
    preprocess_audio_input,
    preprocess_history_frames,
)
from uio2_core.vocab import EOS_ID, PREFIXES, Vocabulary, image_history_token

log = logging.getLogger(__name__)
SEGMENT_SAMPLES = 65280  # 4.08 s at 16 kHz
_MAX_KEPT_PARTS = 1024  # text parts whose ids an InputBuilder keeps
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@lru_cache(maxsize=1)
def templates() -> dict[str, Any]:
    return json.loads(resources.files("policies").joinpath("templates.json").read_text())


@dataclass
class Example:
    """One model input before tokenisation / preprocessing (images HWC uint8, audio mono float)."""

    text: str
    image: np.ndarray | None = None
    history: list[np.ndarray] = field(default_factory=list)
    audio: np.ndarray | None = None
    audio_history: list[np.ndarray] = field(default_factory=list)
    # the text without its `skip` oldest history steps, and how many there are: when the text is
    # longer than the model's text length, the oldest steps go first (the instruction always stays)
    shorten: Callable[[int], str] | None = None
    steps: int = 0


def chw_to_hwc(image: np.ndarray) -> np.ndarray:
    """VIMA-style CHW uint8 -> HWC (HWC input is returned unchanged)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = np.transpose(image, (1, 2, 0))
    if image.ndim == 3 and image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image


def mono(audio: np.ndarray) -> np.ndarray:
    """(channels, samples) or (samples,) float -> (samples,) float32."""
    audio = np.asarray(audio, np.float32)
    return audio.mean(axis=0) if audio.ndim == 2 else audio.reshape(-1)


# ---- VIMA -----------------------------------------------------------------------------------------


def crop_to_object(image: np.ndarray, margin: float = 0.25) -> np.ndarray:
    """The square around what differs from the background (the corner pixel's colour), with `margin`
    of its side on each side. A prompt asset is one small object in a 128x256 frame: at a history
    frame's size (48 px in `tiny`) it shrinks to a few pixels; cropped, it fills the frame, as VIMA's
    object-centric prompt tokens see it. An empty image is returned unchanged."""
    image = np.asarray(image)
    diff = np.abs(image.astype(np.int16) - image[0, 0].astype(np.int16)).max(-1) > 12
    rows, cols = np.flatnonzero(diff.any(1)), np.flatnonzero(diff.any(0))
    if not len(rows):
        return image
    side = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    side = int(side * (1 + 2 * margin))
    cy, cx = (rows[0] + rows[-1]) // 2, (cols[0] + cols[-1]) // 2
    top, left = max(cy - side // 2, 0), max(cx - side // 2, 0)
    return image[top : top + side, left : left + side]


def vima_prompt_images(
    prompt: str, assets: dict[str, Any], view: str = "front", crop: bool = False
) -> tuple[str, list[np.ndarray]]:
    """Replace each `{placeholder}` by `<image_history_i>` (order of first appearance) and collect
    the assets' images for those slots (`crop`: each cropped to its object, `crop_to_object`)."""
    names: list[str] = []
    for m in _PLACEHOLDER.finditer(prompt):
        if m.group(1) not in names:
            names.append(m.group(1))
    missing = [n for n in names if n not in assets]
    if missing:
        raise ValueError(f"prompt placeholders {missing} have no prompt asset")
    images = [chw_to_hwc(assets[n]["rgb"][view]) for n in names]
    if crop:
        images = [crop_to_object(im) for im in images]
    text = _PLACEHOLDER.sub(lambda m: f"<image_history_{names.index(m.group(1)) + 1}>", prompt)
    return text, images


def vima_text(prompt_text: str, n_prompt: int, actions: list[str], template: int = 0, skip: int = 0) -> str:
    """The VIMA prompt with the past steps' actions; `skip` leaves out the oldest `skip` steps
    (their frames keep their slots and token numbers)."""
    t = templates()
    past = ""
    if actions[skip:]:
        frames = [
            t["history_step"].format(frame=f"<image_history_{n_prompt + i + 1}>", action=a)
            for i, a in enumerate(actions) if i >= skip
        ]  # fmt: skip
        past = t["vima_history"].format(frames="; ".join(frames))
    return PREFIXES["text"] + t["vima"][template].format(prompt=prompt_text, history=past)


def vima_example(
    prompt_text: str, obs: dict[str, Any], history: EpisodeHistory, template: int = 0, view: str = "front"
) -> Example:
    n_prompt, actions = len(history.prompt_images), list(history.actions) if history.frames else []
    return Example(
        text=vima_text(prompt_text, n_prompt, actions, template), image=chw_to_hwc(obs["rgb"][view]),
        history=history.history_images(),
        shorten=lambda skip: vima_text(prompt_text, n_prompt, actions, template, skip), steps=len(actions),
    )  # fmt: skip


# ---- PointNav -------------------------------------------------------------------------------------


def pointnav_text(rho: float, phi: float, action_space: str, actions: list[str], template: int = 0,
                  skip: int = 0) -> str:  # fmt: skip
    """The PointNav prompt with the past steps' actions; `skip` leaves out the oldest `skip` steps."""
    t = templates()
    past = ""
    if actions[skip:]:
        steps = [
            t["history_step"].format(frame=image_history_token_text(i + 1), action=a)
            for i, a in enumerate(actions) if i >= skip
        ]  # fmt: skip
        past = t["pointnav_history"].format(steps=", ".join(steps))
    return PREFIXES["text"] + t["pointnav"][template].format(
        rho=f"{rho:.2f}", phi=f"{math.degrees(phi):.0f}", action_space=action_space, history=past
    )


def pointnav_example(
    obs: dict[str, Any],
    history: EpisodeHistory,
    action_space: str,
    template: int = 0,
    audio_window: list | None = None,
) -> Example:
    rho, phi = (float(v) for v in np.asarray(obs["pointgoal_with_gps_compass"]).reshape(-1)[:2])
    actions = list(history.actions) if history.frames else []
    audio = None
    if "audio" in obs:
        audio = np.concatenate([*(audio_window or []), mono(obs["audio"])])[-SEGMENT_SAMPLES:]
    return Example(
        text=pointnav_text(rho, phi, action_space, actions, template), image=chw_to_hwc(obs["rgb"]),
        history=list(history.frames), audio=audio, audio_history=list(history.audio),
        shorten=lambda skip: pointnav_text(rho, phi, action_space, actions, template, skip),
        steps=len(actions),
    )  # fmt: skip


def image_history_token_text(i: int) -> str:
    image_history_token(i)  # validates 1..8
    return f"<image_history_{i}>"


def audio_wave(wave: np.ndarray | None) -> np.ndarray:
    """A clip's raw model segment: its last 4.08 s, mono, zero-padded at the end (zeros for no clip);
    `audio_segment` (host) and `device_audio.prepare_audio` (compiled) turn it into the input."""
    seg = np.zeros(SEGMENT_SAMPLES, np.float32)
    if wave is not None and wave.size:
        w = mono(wave)[-SEGMENT_SAMPLES:]
        seg[: w.size] = w
    return seg


def audio_segment(wave: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """A clip's model input: its last 4.08 s (zero-padded) as a spectrogram [256, 128, 1] + patch mask
    [P] (zeros for no clip)."""
    pre = preprocess_audio_input(audio_wave(wave))
    return pre.spectrogram, pre.mask.reshape(-1)


def host_frames(frames: list[np.ndarray], size: int, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """The host numpy preprocessing of frames (`prepare_frames_np`'s layout): [T, size, size, 3], [T, P]."""
    pre = preprocess_history_frames(frames, size, max_frames=max(len(frames), 1), patch=patch)
    return pre.images, pre.masks.reshape(len(frames), (size // patch) ** 2)


# ---- arrays ---------------------------------------------------------------------------------------


@dataclass
class InputBuilder:
    """Examples -> fixed-shape model arrays, so one compiled model serves every step.

    Text is padded to `text_len` (longer prompts are truncated, keeping EOS, with a warning, as
    the original truncates at 511 + EOS); history always has `max_frames` slots with masks.
    """

    cfg: UIO2Config
    vocab: Vocabulary
    text_len: int = 128
    max_frames: int | None = None
    with_audio: bool = False
    # keep the ids of text parts that repeat from step to step (the prompt, past actions: the text
    # cut at special tokens, `Vocabulary.split_at_specials`), so each is tokenised once
    cache_tokens: bool = True
    # images through the host numpy path (`preprocess_image_input`) instead of `prepare_frames`: the
    # path before device preprocessing, kept to measure it and to test that both agree
    host_preprocessing: bool = False
    _ids: dict[str, list[int]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        limit = self.cfg.transformer.encoder_max_text_length
        if not 1 < self.text_len <= limit:
            raise ValueError(f"text_len must be in 2..{limit}, got {self.text_len}")
        self.max_frames = self.max_frames or self.cfg.image_history.max_frames

    def tokens(self, text: str, shorten: Callable[[int], str] | None = None, steps: int = 0) -> np.ndarray:
        """Ids + EOS padded to `text_len`. Too long: the oldest history steps are left out first
        (`shorten`), so the instruction and the newest steps stay; only an instruction that alone is
        too long loses its end (with a warning)."""
        out, skip, cut = self.fitted_tokens(text, shorten, steps)
        if skip:
            log.info("prompt over text_len %d: its %d oldest history steps left out", self.text_len, skip)
        if cut:
            log.warning("prompt of %d tokens truncated to %d", cut, self.text_len)
        return out

    def fitted_tokens(
        self, text: str, shorten: Callable[[int], str] | None = None, steps: int = 0
    ) -> tuple[np.ndarray, int, int]:
        """`tokens` without the logging: (ids, history steps left out, tokens before the cut or 0), so
        that training can count and report what it shortened instead of logging every step."""
        ids = self.encode(text)
        skip = 0
        while len(ids) > self.text_len - 1 and shorten is not None and skip < steps:
            skip += 1
            ids = self.encode(shorten(skip))
        cut = 0
        if len(ids) > self.text_len - 1:
            cut = len(ids) + 1
            ids = ids[: self.text_len - 1]
        out = np.zeros(self.text_len, np.int32)
        out[: len(ids) + 1] = [*ids, EOS_ID]
        return out, skip, cut

    def encode(self, text: str) -> list[int]:
        """`vocab.encode(text)`, from the kept ids of its parts where they were seen before."""
        if not self.cache_tokens:
            return self.vocab.encode(text)
        out: list[int] = []
        for part in self.vocab.split_at_specials(text):
            ids = self._ids.get(part)
            if ids is None:
                ids = self.vocab.encode(part)
                if len(self._ids) >= _MAX_KEPT_PARTS:  # bounded: the oldest part goes first
                    del self._ids[next(iter(self._ids))]
                self._ids[part] = ids
            out.extend(ids)
        return out

    def arrays(
        self, ex: Example, tokens: np.ndarray | None = None, without: Collection[str] = ()
    ) -> dict[str, np.ndarray]:
        """The example's model arrays (images through the device preprocessing, `prepare_frames`, one
        frame a call, as training's examples). `tokens` (from `tokens`/`fitted_tokens` of its text)
        skips tokenizing again (training tokenizes each recorded step once); `without` names histories
        ("image_history", "audio_history") left out, for a caller that gives their latents instead
        (`image_history_latents`, `audio_history_latents`)."""
        cfg = self.cfg
        if ex.image is None:
            raise ValueError("the UIO2 policy needs a main image in every example")
        patch = cfg.image_vit.patch_size
        frames = host_frames if self.host_preprocessing else prepare_frames_np
        image, image_mask = frames([ex.image], cfg.image_input_size, patch)
        if len(ex.history) > self.max_frames:
            raise ValueError(
                f"example has {len(ex.history)} history frames, more than {self.max_frames} slots"
            )
        out = {
            "text": self.tokens(ex.text, ex.shorten, ex.steps) if tokens is None else tokens,
            "image": image[0],
            "image_mask": image_mask[0],
        }
        if "image_history" not in without:
            size, n = cfg.image_history_size, len(ex.history)
            images, masks = frames(ex.history, size, patch)
            out["image_history"] = np.zeros((self.max_frames, size, size, 3), np.float32)
            out["image_history_mask"] = np.zeros((self.max_frames, (size // patch) ** 2), bool)
            out["image_history"][:n], out["image_history_mask"][:n] = images, masks
        if self.with_audio:
            out.update(self.audio_arrays(ex, "audio_history" not in without))
        return out

    def text_ids(self, examples: list[Example]) -> np.ndarray:
        """[B, text_len] token ids of the examples (`tokens` of each)."""
        return np.stack([self.tokens(e.text, e.shorten, e.steps) for e in examples])

    def audio_arrays(self, ex: Example, history: bool = True) -> dict[str, np.ndarray]:
        """The audio and (`history`) audio-history arrays of `ex` (zeros where it has none)."""
        spec, mask = audio_segment(ex.audio)
        if not history:
            return {"audio": spec, "audio_mask": mask}
        return {"audio": spec, "audio_mask": mask, **self.audio_history_arrays(ex)}

    def audio_history_arrays(self, ex: Example) -> dict[str, np.ndarray]:
        """`ex`'s audio-history clips (host spectrograms), padded to `max_frames` slots with zeros."""
        hist = [audio_segment(a) for a in ex.audio_history[-self.max_frames :]]
        n_pad = self.max_frames - len(hist)
        spec = np.zeros((AUDIO_FRAMES, N_MELS, 1), np.float32)
        mask = np.zeros((AUDIO_FRAMES // AUDIO_PATCH) * (N_MELS // AUDIO_PATCH), bool)
        h_spec = np.stack([h[0] for h in hist] + [spec] * n_pad)
        h_mask = np.stack([h[1] for h in hist] + [mask] * n_pad)
        return {"audio_history": h_spec, "audio_history_mask": h_mask}

    def collate(self, examples: list[Example], without: Collection[str] = ()) -> dict[str, np.ndarray]:
        rows = [self.arrays(e, without=without) for e in examples]
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


__all__ = ["AUDIO_SAMPLE_RATE", "Example", "InputBuilder", "pointnav_example", "templates", "vima_example"]
