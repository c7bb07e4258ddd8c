"""Per-episode memory of a policy: the last K frames (and audio clips) with the actions taken.

The model has `max_frames` history slots (8 released). Prompt images (VIMA's multimodal prompt)
take the first slots; past observations fill the rest, newest kept. Prompts with more images than
slots are handled by one documented rule: the overflow images are tiled into a grid in the last
prompt slot (all still referenced by that slot's token), with a warning; nothing is dropped.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def tile_images(images: list[np.ndarray]) -> np.ndarray:
    """A near-square grid of HWC uint8 images (each padded to the largest size)."""
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    grid = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * h : r * h + im.shape[0], c * w : c * w + im.shape[1]] = im
    return grid


def fit_prompt_images(images: list[np.ndarray], slots: int) -> list[np.ndarray]:
    """At most `slots` images: the overflow is tiled into the last one (logged)."""
    if len(images) <= slots:
        return list(images)
    log.warning(
        "prompt has %d images but the model has %d history slots: images %d..%d are tiled into slot %d",
        len(images), slots, slots, len(images), slots,
    )  # fmt: skip
    return [*images[: slots - 1], tile_images(images[slots - 1 :])]


@dataclass
class EpisodeHistory:
    """Prompt images + a bounded window of past (frame, action text, audio) steps."""

    max_frames: int
    prompt_images: list[np.ndarray] = field(default_factory=list)
    frames: deque = field(init=False)
    actions: deque = field(init=False)
    audio: deque = field(init=False)
    step: int = 0
    # what a policy derived from each history image, kept beside it (the UIO2 policy: its perceiver
    # latents, computed once per episode); None until filled; leaves with its frame, reset with the episode
    prompt_latents: list = field(init=False)
    latents: deque = field(init=False)
    audio_latents: deque = field(init=False)  # the same for each audio clip

    def __post_init__(self):
        self.reset([])

    def reset(self, prompt_images: list[np.ndarray]) -> None:
        self.prompt_images = fit_prompt_images(prompt_images, self.max_frames)
        self.step = 0
        k = self.max_frames - len(self.prompt_images)
        self.frames = deque(maxlen=k)
        self.actions = deque(maxlen=k)
        self.audio = deque(maxlen=self.max_frames)
        self.prompt_latents = [None] * len(self.prompt_images)
        self.latents = deque(maxlen=k)
        self.audio_latents = deque(maxlen=self.max_frames)

    @property
    def past_slots(self) -> int:
        return self.max_frames - len(self.prompt_images)

    def push(self, frame: np.ndarray | None, action_text: str, audio: np.ndarray | None = None) -> None:
        """Record the observation an action was taken on (call after acting)."""
        if self.past_slots > 0 and frame is not None:
            self.frames.append(frame)
            self.actions.append(action_text)
            self.latents.append(None)
        if audio is not None:
            self.audio.append(audio)
            self.audio_latents.append(None)
        self.step += 1

    def history_images(self) -> list[np.ndarray]:
        return [*self.prompt_images, *self.frames]

    def history_items(self, audio: bool = False) -> list[np.ndarray]:
        """`history_images()`, or (`audio`) the audio clips."""
        return list(self.audio) if audio else self.history_images()

    def history_latents(self, audio: bool = False) -> list:
        """What was derived from each of `history_items(audio)`, in the same order (None: not yet)."""
        return list(self.audio_latents) if audio else [*self.prompt_latents, *self.latents]

    def set_latent(self, slot: int, value: Any, audio: bool = False) -> None:
        """Keep `value` for `history_items(audio)[slot]`."""
        if audio:
            self.audio_latents[slot] = value
            return
        n = len(self.prompt_latents)
        if slot < n:
            self.prompt_latents[slot] = value
        else:
            self.latents[slot - n] = value

    def summary(self) -> dict[str, Any]:
        return {"prompt_images": len(self.prompt_images), "past_frames": len(self.frames), "step": self.step}
