"""The oracle: a shortest-path follower (like Habitat's ShortestPathFollower) that calls STOP on arrival.

Each step it walks the precomputed shortest-path tree from the agent's cell, picks the farthest path
point it can see with some clearance to spare (string pulling, so it cuts corners as a navmesh path
does), turns towards it while the heading error exceeds half a turn, and moves forward otherwise.
Use: `Oracle(env).act()` or `env.unwrapped.oracle_action()`.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from envs.pointnav.actions import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT
from envs.pointnav.geometry import wrap_angle


class NavState(Protocol):
    """What the oracle reads from the env (PointNavEnv has it; the oracle does not import env.py,
    which imports the oracle)."""

    nav: Any
    goal_field: Any
    agent_position: np.ndarray
    agent_yaw: float
    metrics: Any
    success_distance: float


class Oracle:
    """Shortest-path follower for a PointNavEnv (or any wrapper around one)."""

    def __init__(self, env: gym.Env, lookahead_cells: int = 120, margin: float = 0.04) -> None:
        self.env: NavState = env.unwrapped  # type: ignore[assignment]
        self.lookahead_cells = lookahead_cells
        self.margin = margin

    def waypoint(self) -> np.ndarray:
        """The farthest point on the shortest path that is visible with clearance `margin` to spare."""
        env = self.env
        nav, field = env.nav, env.goal_field
        assert nav is not None and field is not None
        p = env.agent_position
        clearance = nav.agent_radius + self.margin
        if nav.line_of_sight(p, field.goal, clearance):
            return field.goal
        cells = nav.path_cells(p, field, self.lookahead_cells)
        centers = nav.center_of(cells)
        best = centers[min(1, len(centers) - 1)]
        # Scan from far to near in strides of 4 cells: the first visible path point is the waypoint.
        for k in range(len(centers) - 1, 0, -4):
            if nav.line_of_sight(p, centers[k], clearance):
                best = centers[k]
                break
        return best

    def act(self) -> int:
        env = self.env
        if env.nav is None or env.goal_field is None:
            raise RuntimeError("oracle used before reset()")
        if env.metrics.distance_to_goal < env.success_distance:
            return STOP
        target = self.waypoint()
        delta = target - env.agent_position
        desired = math.atan2(-delta[0], -delta[1])  # the yaw whose forward vector points at the target
        error = wrap_angle(desired - env.agent_yaw)
        half_turn = math.radians(5.0) + 1e-6
        if abs(error) > half_turn:
            return TURN_LEFT if error > 0 else TURN_RIGHT
        return MOVE_FORWARD


def run_oracle_episode(env: gym.Env, seed: int | None = None, options: dict | None = None) -> dict:
    """Roll the oracle for one episode; returns the final info dict (success, spl, soft_spl, ...)."""
    env.reset(seed=seed, options=options)
    oracle = Oracle(env)
    while True:
        _, _, terminated, truncated, info = env.step(oracle.act())
        if terminated or truncated:
            return info
