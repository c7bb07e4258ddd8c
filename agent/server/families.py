"""What the UIO2 policy needs from a task, checked at reset so a bad session never reaches a batch.

A session's observations are checked against the space it declared (`spaces.check_observation`), but
a declaration can be well-formed and still unusable: PointNav without its goal, a 2-D or zero-size
image, a goal of shape (0,), a tabletop prompt whose `{placeholder}` has no image. Such a session used
to fail its first batched step (and, with it, the whole shared batch, which then ran again row by
row). Here the declared spaces and the prompt assets are checked against what the policy reads, per
task family, and refused at reset with `invalid_task` naming the field. Since every later observation
must match the declaration exactly (dtype, shape, finite floats), a session that passes cannot break
the batch with the shape or type of what it sends.
"""

from __future__ import annotations

import math
import re
from typing import Any

import gymnasium as gym
import numpy as np

from agent.server.protocol import ProtocolError
from policies.base import TaskSpec

POINTGOAL = "pointgoal_with_gps_compass"
PLACEHOLDER = re.compile(r"\{(\w+)\}")  # as policies.prompting: `{name}` in a VIMA prompt
MAX_TILED_PROMPT_BYTES = 32 * 2**20  # prompt images beyond the history slots are tiled into one image


def _fail(message: str) -> ProtocolError:
    return ProtocolError("invalid_task", message)


def image_hw(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """(H, W) of an image the policy can read (HxWx3, HxWx1, 3xHxW or 1xHxW, H and W >= 1), else None;
    the same layouts `policies.prompting.chw_to_hwc` turns into HxWx3."""
    if len(shape) != 3:
        return None
    if shape[0] in (1, 3) and shape[-1] not in (1, 3):
        shape = (shape[1], shape[2], shape[0])
    if shape[-1] not in (1, 3) or shape[0] < 1 or shape[1] < 1:
        return None
    return shape[0], shape[1]


def _image_space(space: Any, at: str) -> None:
    if not isinstance(space, gym.spaces.Box) or space.dtype != np.uint8 or image_hw(space.shape) is None:
        raise _fail(
            f"{at}: the UIO2 policy needs a uint8 image Box of shape HxWx3 (or HxWx1, 3xHxW), got {space}"
        )


def _sub(space: Any, key: str, at: str) -> Any:
    if not isinstance(space, gym.spaces.Dict) or key not in space.spaces:
        have = sorted(space.spaces) if isinstance(space, gym.spaces.Dict) else type(space).__name__
        raise _fail(f"{at}[{key!r}]: the UIO2 policy needs this key (the space has {have})")
    return space.spaces[key]


def check_pointnav(task: TaskSpec) -> None:
    space = task.observation_space
    _image_space(_sub(space, "rgb", "observation_space"), "observation_space['rgb']")
    goal = _sub(space, POINTGOAL, "observation_space")
    if not isinstance(goal, gym.spaces.Box) or goal.shape != (2,):
        raise _fail(f"observation_space[{POINTGOAL!r}]: expected a Box of shape (2,) (rho, phi), got {goal}")
    audio = space.spaces.get("audio")
    if audio is not None and (
        not isinstance(audio, gym.spaces.Box)
        or audio.dtype.kind != "f"
        or len(audio.shape) not in (1, 2)
        or 0 in audio.shape
    ):
        raise _fail(
            f"observation_space['audio']: expected a float Box of shape (samples,) or (channels, samples), "
            f"got {audio}"
        )


def check_vima(task: TaskSpec, view: str, slots: int) -> None:
    rgb = _sub(task.observation_space, "rgb", "observation_space")
    _image_space(_sub(rgb, view, "observation_space['rgb']"), f"observation_space['rgb'][{view!r}]")
    names = list(dict.fromkeys(PLACEHOLDER.findall(task.prompt)))
    sizes = []
    for name in names:
        at = f"prompt_assets[{name!r}]['rgb'][{view!r}]"
        asset = task.prompt_assets.get(name)
        image = asset.get("rgb") if isinstance(asset, dict) else None
        image = image.get(view) if isinstance(image, dict) else None
        if not isinstance(image, np.ndarray):
            got = type(image).__name__
            raise _fail(f"{at}: the prompt's {{{name}}} needs this image (a uint8 array), got {got}")
        hw = image_hw(image.shape)
        if image.dtype != np.uint8 or hw is None:
            raise _fail(f"{at}: expected a uint8 image HxWx3 (or 3xHxW), got {image.dtype} {image.shape}")
        sizes.append(hw)
    if len(sizes) > slots:  # `policies.history.fit_prompt_images` tiles the overflow into one image
        over = sizes[slots - 1 :]
        cols = math.ceil(math.sqrt(len(over)))
        tiled = math.ceil(len(over) / cols) * max(h for h, _ in over) * cols * max(w for _, w in over) * 3
        if tiled > MAX_TILED_PROMPT_BYTES:
            raise _fail(
                f"prompt_assets: {len(sizes)} prompt images for {slots} history slots would be tiled into "
                f"one image of {tiled} B; the limit is {MAX_TILED_PROMPT_BYTES} B (fewer or smaller images)"
            )


def check_task(task: TaskSpec, family: str, view: str = "front", slots: int = 4) -> None:
    """Raise ProtocolError("invalid_task") naming the field unless the policy can act on this task."""
    if family == "pointnav":
        check_pointnav(task)
    elif family == "vima":
        check_vima(task, view, slots)
