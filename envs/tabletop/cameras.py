"""Near-orthographic front and top cameras placed as VIMA-Bench places its own (its
``NearPerfectCamera128x256``: camera ~1000 m away, huge focal length): the same eye positions, orientations,
focal lengths and depth ranges, so a scene projects onto the same pixels. Top: row ~ 251 (x - 0.5) + 64,
col ~ 251 y + 128; front: the 45-degree view centred on x = 0.41 (VIMA's 0.09 m offset towards the robot)."""

from __future__ import annotations

import math

import numpy as np
import pybullet as p

from envs.tabletop.spaces import IMAGE_HEIGHT, IMAGE_WIDTH, VIEWS

# VIMA-Bench's camera configuration, as numbers: eye position, orientation (euler xyz), focal length in
# pixels (only the focal length sets the field of view; the image centre is the optical axis) and depth range.
FRONT_OFFSET = 0.09
_CAMS = {
    "top": ((0.5, 0.0, 1000.0), (0.0, math.pi, -math.pi / 2), 64e4 // 2.55, (900.0, 1001.0)),
    "front": (
        (1000.0 + 0.5 - FRONT_OFFSET, 0.0, 1000.0),
        (math.pi / 4, math.pi, -math.pi / 2),
        64e4 // 1.80,
        (900.0, 10001.0),
    ),
}
# pixels per metre on the table plane in the top view (focal length / camera height)
PIX_PER_M = _CAMS["top"][2] / _CAMS["top"][0][2]


def _matrices(view: str) -> tuple[list, list]:
    """View and projection matrices built the way VIMA-Bench builds them from its camera configuration."""
    eye, euler, focal, (znear, zfar) = _CAMS[view]
    rot = np.asarray(p.getMatrixFromQuaternion(p.getQuaternionFromEuler(euler)), np.float64).reshape(3, 3)
    look = rot @ np.array([0.0, 0.0, 1.0])
    up = rot @ np.array([0.0, -1.0, 0.0])
    vm = p.computeViewMatrix(list(eye), [eye[i] + look[i] for i in range(3)], up.tolist())
    fov = math.degrees(2.0 * math.atan((IMAGE_HEIGHT / 2) / focal))
    pm = p.computeProjectionMatrixFOV(fov, IMAGE_WIDTH / IMAGE_HEIGHT, znear, zfar)
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
