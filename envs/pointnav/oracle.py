"""The oracle: a shortest-path follower (like Habitat's ShortestPathFollower) that calls STOP on arrival.

Each step it takes the exact shortest path from the agent (envs.pointnav.visgraph: straight legs between
obstacle corners, eased a few centimetres off each corner), aims at the farthest point of it in clear
sight (the goal when in sight), turns towards it while the heading error exceeds half a turn, and moves
forward otherwise.
Use: `Oracle(env).act()` or `env.unwrapped.oracle_action()`.
"""

from __future__ import annotations

import itertools
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

    def __init__(
        self, env: gym.Env, margin: float = 0.05, spacing: float = 0.1, horizon: int = 40, reach: float = 0.3
    ) -> None:
        self.env: NavState = env.unwrapped  # type: ignore[assignment]
        self.margin = margin  # how far path corners are eased into free space
        self.spacing = spacing  # sample spacing along the path when looking for the farthest visible point
        self.horizon = horizon  # samples looked at (4 m ahead at the default spacing)
        self.reach = reach  # this close to the first bend, look past it

    def _eased(self, corner: int) -> np.ndarray:
        """A path corner moved `margin` away from its blocked cell, into free space."""
        nav = self.env.nav
        assert nav is not None
        point = nav.graph.vertices[corner] * nav.res
        s = nav.graph.blocked_dir[corner]
        n = math.hypot(s[0], s[1])
        return point if n == 0.0 else point - s * (self.margin / n)

    def waypoint(self) -> np.ndarray:
        """The farthest point the agent can see on the next legs of the exact shortest path.

        Far from the path's first bend, that bend (eased off its obstacle) is the target. Within `reach`
        of it, the legs up to the second bend (corners eased, at most `horizon` samples) are sampled
        every `spacing` metres and the farthest sample in a clear straight line is the target (string
        pulling: a bend reached but not yet passed still gives a target just around it).
        """
        env = self.env
        nav, field = env.nav, env.goal_field
        assert nav is not None and field is not None
        p = env.agent_position
        corners = nav.route(p, field)
        if not corners:
            return field.goal
        first = self._eased(corners[0])
        if math.hypot(*(first - p)) > self.reach:
            return first  # the path's first leg (later bends take over as soon as they are in sight)
        pts = [p, *(self._eased(c) for c in corners[:2])]
        if len(corners) <= 2:
            pts.append(field.goal)
        samples = []
        for a, b in itertools.pairwise(pts):
            n = max(1, math.ceil(math.hypot(*(b - a)) / self.spacing))
            samples.append(a + (b - a) * (np.arange(1, n + 1) / n)[:, None])
        cand = np.concatenate(samples)[: self.horizon]
        ok = ~nav.graph.blocked(p / nav.res, cand / nav.res)
        return cand[int(np.flatnonzero(ok)[-1])] if ok.any() else pts[1]

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
