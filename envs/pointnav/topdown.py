"""A top-down map frame (plan, walked path, agent with heading, goal) drawn with numpy, for videos."""

from __future__ import annotations

import itertools
import math

import numpy as np

from envs.pointnav.navmesh import NavGrid

_BLOCKED = np.array([60, 60, 70], dtype=np.uint8)
_FREE = np.array([200, 200, 200], dtype=np.uint8)
_NAVIGABLE = np.array([235, 235, 235], dtype=np.uint8)
_PATH = np.array([30, 110, 230], dtype=np.uint8)
_AGENT = np.array([20, 160, 60], dtype=np.uint8)
_GOAL = np.array([220, 40, 40], dtype=np.uint8)


def base_map(nav: NavGrid) -> np.ndarray:
    """The plan at one pixel per cell: blocked, free but too close to walls, navigable."""
    img = np.empty((*nav.shape, 3), dtype=np.uint8)
    img[:] = _FREE
    img[nav.scene.occupancy] = _BLOCKED
    img[nav.navigable] = _NAVIGABLE
    return img


def _disc(img: np.ndarray, center_rc: tuple[float, float], radius: float, color: np.ndarray) -> None:
    h, w = img.shape[:2]
    r0, r1 = max(0, int(center_rc[0] - radius)), min(h, int(center_rc[0] + radius) + 2)
    c0, c1 = max(0, int(center_rc[1] - radius)), min(w, int(center_rc[1] + radius) + 2)
    rr, cc = np.mgrid[r0:r1, c0:c1]
    mask = (rr - center_rc[0]) ** 2 + (cc - center_rc[1]) ** 2 <= radius**2
    img[r0:r1, c0:c1][mask] = color


def _line(img: np.ndarray, a_rc: np.ndarray, b_rc: np.ndarray, color: np.ndarray) -> None:
    n = int(max(abs(b_rc - a_rc))) + 2
    t = np.linspace(0.0, 1.0, n)[:, None]
    pts = np.round(a_rc + t * (b_rc - a_rc)).astype(int)
    ok = (pts[:, 0] >= 0) & (pts[:, 0] < img.shape[0]) & (pts[:, 1] >= 0) & (pts[:, 1] < img.shape[1])
    img[pts[ok, 0], pts[ok, 1]] = color


def draw_map(
    base: np.ndarray,
    res: float,
    path_xz: list[np.ndarray],
    agent_xz: np.ndarray,
    yaw: float,
    goal_xz: np.ndarray,
    scale: int = 2,
) -> np.ndarray:
    """Upscale the plan by `scale` and draw the path, the goal and the agent (a disc with a heading tick)."""
    img = np.repeat(np.repeat(base, scale, axis=0), scale, axis=1)

    def rc(p: np.ndarray) -> np.ndarray:
        return np.array([p[1] / res * scale, p[0] / res * scale])

    for a, b in itertools.pairwise(path_xz):
        _line(img, rc(a), rc(b), _PATH)
    _disc(img, tuple(rc(goal_xz)), 0.2 / res * scale, _GOAL)
    _disc(img, tuple(rc(agent_xz)), 0.1 / res * scale + 1, _AGENT)
    tip = np.asarray(agent_xz) + 0.3 * np.array([-math.sin(yaw), -math.cos(yaw)])
    _line(img, rc(agent_xz), rc(tip), _AGENT)
    return img


def fit_height(img: np.ndarray, height: int) -> np.ndarray:
    """Nearest-neighbour resize to `height` rows, keeping the aspect ratio."""
    h, w = img.shape[:2]
    width = max(1, round(w * height / h))
    rows = np.minimum((np.arange(height) * h / height).astype(int), h - 1)
    cols = np.minimum((np.arange(width) * w / width).astype(int), w - 1)
    return img[rows][:, cols]
