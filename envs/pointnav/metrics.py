"""Habitat's PointNav measures (tasks/nav/nav.py), as plain functions plus a per-episode tracker.

Kept separate from the env so the formulas can be tested on hand-built numbers and reused by the
Habitat adapter's checks: success needs STOP, SPL uses max(L, P), soft-SPL does not need STOP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SUCCESS_DISTANCE = 0.2


def success(stop_called: bool, distance_to_goal: float, success_distance: float = SUCCESS_DISTANCE) -> bool:
    """1 only if STOP was called with the geodesic distance strictly below the success distance."""
    return bool(stop_called) and distance_to_goal < success_distance


def spl(is_success: bool, shortest: float, walked: float) -> float:
    """S * L / max(L, P); an episode with L = 0 scores S."""
    if not is_success:
        return 0.0
    denom = max(shortest, walked)
    return 1.0 if denom <= 0.0 else shortest / denom


def soft_spl(distance_to_goal: float, shortest: float, walked: float) -> float:
    """max(0, 1 - d_T / L) * L / max(L, P)."""
    if shortest <= 0.0:
        return 1.0 if distance_to_goal <= 0.0 else 0.0
    soft_success = max(0.0, 1.0 - distance_to_goal / shortest)
    return soft_success * shortest / max(shortest, walked)


@dataclass
class EpisodeMetrics:
    """Running measures of one episode: call `reset` at the start, `update` after every step."""

    success_distance: float = SUCCESS_DISTANCE
    start_distance: float = 0.0
    distance_to_goal: float = 0.0
    walked: float = 0.0
    collisions: int = 0
    num_steps: int = 0
    stop_called: bool = False
    last_position: np.ndarray = field(default_factory=lambda: np.zeros(2))

    def reset(self, position: np.ndarray, distance_to_goal: float) -> None:
        self.start_distance = self.distance_to_goal = float(distance_to_goal)
        self.walked = 0.0
        self.collisions = 0
        self.num_steps = 0
        self.stop_called = False
        self.last_position = np.asarray(position, dtype=np.float64).copy()

    def update(
        self, position: np.ndarray, distance_to_goal: float, collided: bool, stop_called: bool
    ) -> None:
        position = np.asarray(position, dtype=np.float64)
        self.walked += float(math.hypot(*(position - self.last_position)))
        self.last_position = position.copy()
        self.distance_to_goal = float(distance_to_goal)
        self.collisions += int(collided)
        self.num_steps += 1
        self.stop_called = self.stop_called or bool(stop_called)

    @property
    def success(self) -> bool:
        return success(self.stop_called, self.distance_to_goal, self.success_distance)

    @property
    def spl(self) -> float:
        return spl(self.success, self.start_distance, self.walked)

    @property
    def soft_spl(self) -> float:
        return soft_spl(self.distance_to_goal, self.start_distance, self.walked)
