"""Near-orthographic front and top cameras (camera ~1000 m away, tiny field of view) matching the
benchmark's pixel<->world mapping: top row ~ 247 x - 60, col ~ 252 y + 128; front rows ~ 173 x - 12."""

from __future__ import annotations

import math

import numpy as np
import pybullet as p

from envs.tabletop.spaces import IMAGE_HEIGHT, IMAGE_WIDTH, VIEWS

DISTANCE = 1000.0
PIX_PER_M = 247.0
_FOV_DEG = math.degrees(2.0 * math.atan((IMAGE_HEIGHT / PIX_PER_M) / 2.0 / DISTANCE))
_TILT = math.radians(45.0)
# (eye direction from target, target, up vector); top looks straight down with image "up" = -x,
# front sits in front of the table (+x side) looking back at 45 degrees, so columns grow with y in both.
_CAMS = {
    "top": ((0.0, 0.0, 1.0), (0.5 + (64 - 64) / PIX_PER_M, 0.0, 0.0), (-1.0, 0.0, 0.0)),
    "front": (
        (math.cos(_TILT), 0.0, math.sin(_TILT)),
        (0.44, 0.0, 0.0),
        (-math.sin(_TILT), 0.0, math.cos(_TILT)),
    ),
}


def _matrices(view: str) -> tuple[list, list]:
    d, target, up = _CAMS[view]
    eye = [target[i] + DISTANCE * d[i] for i in range(3)]
    vm = p.computeViewMatrix(eye, list(target), list(up))
    pm = p.computeProjectionMatrixFOV(_FOV_DEG, IMAGE_WIDTH / IMAGE_HEIGHT, DISTANCE - 2.0, DISTANCE + 2.0)
    return vm, pm


_MATS = {v: _matrices(v) for v in VIEWS}


def render(
    client: int, views: tuple[str, ...] = VIEWS, background: int | None = None, seg_shift: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Render rgb (3,H,W) uint8 and segm (H,W) uint8 per view with pybullet's CPU TinyRenderer.

    ``background`` sets rgb where no body is hit (object assets are drawn on white) and segm there to 255.
    """
    rgb_out, seg_out = {}, {}
    for v in views:
        vm, pm = _MATS[v]
        _, _, rgba, _, seg = p.getCameraImage(
            IMAGE_WIDTH, IMAGE_HEIGHT, vm, pm, shadow=0, renderer=p.ER_TINY_RENDERER, physicsClientId=client
        )
        rgba = np.asarray(rgba, dtype=np.uint8).reshape(IMAGE_HEIGHT, IMAGE_WIDTH, 4)
        seg = np.asarray(seg, dtype=np.int64).reshape(IMAGE_HEIGHT, IMAGE_WIDTH)
        rgb = rgba[:, :, :3].copy()
        empty = seg < 0
        if background is not None:
            rgb[empty] = background
        segm = (
            np.where(empty, 255 if background is not None else 0, seg + seg_shift)
            .clip(0, 255)
            .astype(np.uint8)
        )
        rgb_out[v] = np.ascontiguousarray(rgb.transpose(2, 0, 1))
        seg_out[v] = segm
    return rgb_out, seg_out


def world_to_pixel(view: str, xyz) -> tuple[float, float]:
    """(row, col) of a world point: lets tests check the benchmark's pixel<->world mapping."""
    vm, pm = _MATS[view]
    v = np.asarray(vm, dtype=np.float64).reshape(4, 4).T
    m = np.asarray(pm, dtype=np.float64).reshape(4, 4).T
    clip = m @ v @ np.array([*xyz, 1.0])
    ndc = clip[:3] / clip[3]
    col = (ndc[0] + 1.0) / 2.0 * IMAGE_WIDTH
    row = (1.0 - ndc[1]) / 2.0 * IMAGE_HEIGHT
    return float(row), float(col)
