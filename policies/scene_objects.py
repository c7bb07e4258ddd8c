"""The tabletop scene as objects: each object's crop (on white, as prompt images are drawn) and its
table position.

VIMA's own agents see a scene as object tokens (a crop per object from the segmentation, with its
box), and UIO2's VIMA prompts can list object boxes as location tokens. A UIO2 trained from scratch
on a few thousand episodes cannot read where a prompt's object lies from a 64x64 scene image
(docs/tabletop_learning.md): listed with its crop as a history frame and its position in the
action's own location tokens, a pick or place is the position of the listed object whose crop
matches the prompt's image, which the model can copy.

Positions come from the near-orthographic top camera that VIMA-Bench and our tabletop suite share
(`envs.tabletop.cameras`, checked against it in tests): row = PIX_PER_M (x - 0.5) + 64,
col = PIX_PER_M y + 128, so this module needs no pybullet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# VIMA-Bench's top camera: focal length 64e4 // 2.55 px at 1000 m above the table
PIX_PER_M = (64e4 // 2.55) / 1000.0
TOP_CENTRE_ROW, TOP_CENTRE_COL, TOP_CENTRE_X = 64.0, 128.0, 0.5
# segmentation ids that are never objects: the plane, the table, and "nothing" (255 in asset renders)
NOT_OBJECTS = frozenset({0, 1, 255})


@dataclass(frozen=True)
class SceneObject:
    body_id: int
    x: float  # table metres, as the action's pose positions
    y: float
    crop: np.ndarray  # HWC uint8: the object alone on white, square, with a margin


def pixel_to_table(row: float, col: float) -> tuple[float, float]:
    """Top-view pixel -> table (x, y) in metres."""
    return (row - TOP_CENTRE_ROW) / PIX_PER_M + TOP_CENTRE_X, (col - TOP_CENTRE_COL) / PIX_PER_M


def object_ids(segm: np.ndarray, robot_ids: Iterable[int] = ()) -> list[int]:
    """Body ids in a segmentation that are objects: not the plane, table or robot (VIMA-Bench numbers
    the robot's parts after the table; hidden from the rgb, they may still be in the segmentation)."""
    skip = NOT_OBJECTS | {int(i) for i in robot_ids}
    return [int(i) for i in np.unique(segm) if int(i) not in skip]


def scene_objects(
    rgb: np.ndarray, segm: np.ndarray, robot_ids: Iterable[int] = (), margin: float = 0.25
) -> list[SceneObject]:
    """The objects of a top view (rgb HWC uint8, segm HxW body ids), in reading order of their table
    position (x, then y: what a detector would list, not the order the task created them in, which
    would tell which one is the target)."""
    rgb, segm = np.asarray(rgb), np.asarray(segm)
    if rgb.shape[:2] != segm.shape:
        raise ValueError(f"rgb {rgb.shape} and segm {segm.shape} are not the same view")
    out = []
    for body in object_ids(segm, robot_ids):
        mask = segm == body
        rows, cols = np.nonzero(mask)
        x, y = pixel_to_table(rows.mean(), cols.mean())
        side = int((max(np.ptp(rows), np.ptp(cols)) + 1) * (1 + 2 * margin))
        top, left = (rows.min() + rows.max() - side) // 2, (cols.min() + cols.max() - side) // 2
        crop = np.full((side, side, 3), 255, np.uint8)  # the object alone on white, padded past the edges
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(top + side, segm.shape[0]), min(left + side, segm.shape[1])
        window = mask[r0:r1, c0:c1, None]
        crop[r0 - top : r1 - top, c0 - left : c1 - left] = np.where(window, rgb[r0:r1, c0:c1], 255)
        out.append(SceneObject(body, float(x), float(y), crop))
    out.sort(key=lambda o: (round(o.x, 2), o.y))
    return out
