"""Ground a VIMA prompt's objects in the scene one candidate at a time, then act on where they are.

A tiny UIO2 trained from scratch on a few thousand episodes learns to tell whether two object
images show the same object, asked in two fixed history slots, but not to find which of several
listed objects a prompt image shows, nor where it lies in a 64x64 scene (docs/tabletop_learning.md).
So a grounded policy asks the model, for each object image of the prompt and each object of the
scene (its crop from the top view's segmentation, `policies.scene_objects`), QUESTION, keeps the
object whose `yes` beats `no` by most, and writes the prompt again with each object image replaced
by that object's table position in the action's own location tokens ("Put the ( x y ) into the
( x y )."): the model then writes the action as usual, copying positions and reading the rest
(rotate's angle) from the text. VIMA's own agents see a scene as object crops from the same
segmentation.

Training labels need no oracle: a prompt asset's `obj_info` names its object and texture, and the
scene's `meta_info["obj_id_to_info"]` names every body's (VIMA-Bench's layout, which our suite
copies), so the matching scene objects are known exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from policies.codecs import VimaActionCodec
from policies.prompting import Example, chw_to_hwc, crop_to_object
from policies.scene_objects import SceneObject, scene_objects
from uio2_core.vocab import PREFIXES

QUESTION = "Is <image_history_2> the same object as <image_history_1>?"
ANSWERS = {True: "yes", False: "no"}
WORKSPACE_CENTRE = (0.5, 0.0)
GROUNDING_VIEW = "top"  # scene_objects' pixel -> table mapping is the top camera's
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_BLANK = np.full((8, 8, 3), 255, np.uint8)  # the main image of a grounding question: nothing to see


@dataclass(frozen=True)
class PromptObject:
    """An object placeholder of the prompt: its name, its image (as the model sees it) and, where the
    asset says, which object it shows (obj_name, texture)."""

    name: str
    image: np.ndarray
    identity: tuple[str, str] | None


def prompt_objects(prompt: str, assets: Mapping[str, Any], view: str, crop: bool) -> list[PromptObject]:
    """The prompt's object placeholders in order of first appearance (scene placeholders are not
    objects: they stay prompt images)."""
    out: list[PromptObject] = []
    for m in _PLACEHOLDER.finditer(prompt):
        name = m.group(1)
        asset = assets.get(name)
        if asset is None:
            raise ValueError(f"prompt placeholder {name!r} has no prompt asset")
        if name in {o.name for o in out} or asset.get("placeholder_type", "object") != "object":
            continue
        image = chw_to_hwc(np.asarray(asset["rgb"][view]))
        info = (asset.get("segm") or {}).get("obj_info")
        identity = (str(info["obj_name"]), str(info["obj_color"])) if isinstance(info, Mapping) else None
        out.append(PromptObject(name, crop_to_object(image) if crop else image, identity))
    return out


def scene_identities(meta_info: Mapping[str, Any]) -> dict[int, tuple[str, str]]:
    """Body id -> (obj_name, texture) of the scene's objects (`meta_info["obj_id_to_info"]`)."""
    table = meta_info.get("obj_id_to_info") or {}
    return {int(k): (str(v["obj_name"]), str(v["texture_name"])) for k, v in table.items()}


def matches(obj: PromptObject, objects: Sequence[SceneObject], identities: Mapping[int, tuple[str, str]]
            ) -> list[int]:  # fmt: skip
    """Indices of the scene objects that are the prompt object (same shape and texture)."""
    if obj.identity is None:
        return []
    return [i for i, o in enumerate(objects) if identities.get(o.body_id) == obj.identity]


def top_view_objects(obs: Mapping[str, Any], robot_ids: Sequence[int] = ()) -> list[SceneObject]:
    """The scene's objects from a VIMA-style observation's top view (rgb CHW, segm HxW)."""
    segm = obs.get("segm")
    if not isinstance(segm, Mapping) or GROUNDING_VIEW not in segm:
        raise ValueError(
            "grounding the prompt's objects needs the top view's segmentation (obs['segm']['top']); "
            "record datasets with this version (observation.segm.top) and use an env that gives it"
        )
    return scene_objects(chw_to_hwc(np.asarray(obs["rgb"][GROUNDING_VIEW])), np.asarray(segm[GROUNDING_VIEW]),
                         robot_ids)  # fmt: skip


def location_text(x: float, y: float) -> str:
    """A table position in the VIMA action's own location tokens: `( <x bin> <y bin> )`."""
    bins = VimaActionCodec.position_bins(np.array([x, y]))
    return "( " + " ".join(f"<extra_id_{200 + b}>" for b in bins) + " )"  # bin b is <extra_id_{200+b}>


def located_prompt(prompt: str, positions: Mapping[str, tuple[float, float]]) -> str:
    """The prompt with each placeholder in `positions` replaced by its position's location tokens;
    the others are left for `vima_prompt_images`."""
    def sub(m: re.Match) -> str:
        where = positions.get(m.group(1))
        return m.group(0) if where is None else location_text(*where)

    return _PLACEHOLDER.sub(sub, prompt)


def question(prompt_image: np.ndarray, crop: np.ndarray) -> Example:
    """"Is this scene object the prompt's object?": the prompt image in history slot 1, the crop in 2."""
    return Example(PREFIXES["text"] + QUESTION, _BLANK, [prompt_image, crop])


def choose(scores: np.ndarray) -> list[int]:
    """Scene object per prompt object ([P, O] scores, yes minus no), in prompt order, each object used
    once while there are objects left (a prompt names different objects)."""
    scores = np.asarray(scores, np.float64)
    taken: set[int] = set()
    out = []
    for row in scores:
        order = [int(i) for i in np.argsort(-row, kind="stable")]
        pick = next((i for i in order if i not in taken), order[0])
        taken.add(pick)
        out.append(pick)
    return out
