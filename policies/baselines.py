"""Baseline policies behind the same protocol: the env's oracle, random actions, and replay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from policies.base import BatchedPolicy, TaskSpec


class RandomPolicy(BatchedPolicy):
    """Uniform samples from the action space, seeded per episode (reproducible)."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.last_info: dict[str, Any] = {}

    def spawn(self) -> RandomPolicy:
        return RandomPolicy(self.seed)

    def reset(self, task: TaskSpec) -> None:
        self.space = task.action_space
        self.space.seed(self.seed if task.seed is None else task.seed + self.seed)

    def act(self, obs: dict, info: dict | None = None) -> Any:
        return self.space.sample()


class OraclePolicy(BatchedPolicy):
    """The environment's scripted oracle (privileged state), as the task spec hands it over."""

    name = "oracle"

    def __init__(self):
        self.last_info: dict[str, Any] = {}

    def spawn(self) -> OraclePolicy:
        return OraclePolicy()

    def reset(self, task: TaskSpec) -> None:
        if task.oracle is None:
            raise ValueError(f"env {task.env_id!r} exposes no oracle")
        self.oracle = task.oracle

    def act(self, obs: dict, info: dict | None = None) -> Any:
        return self.oracle(obs, info or {})


class ReplayPolicy(BatchedPolicy):
    """Plays a fixed list of actions (e.g. a recorded episode), then repeats the last one."""

    name = "replay"

    def __init__(self, actions: Sequence[Any]):
        if not actions:
            raise ValueError("ReplayPolicy needs at least one action")
        self.actions = list(actions)
        self.last_info: dict[str, Any] = {}

    def spawn(self) -> ReplayPolicy:
        return ReplayPolicy(self.actions)

    def reset(self, task: TaskSpec) -> None:
        self.t = 0

    def act(self, obs: dict, info: dict | None = None) -> Any:
        a = self.actions[min(self.t, len(self.actions) - 1)]
        self.t += 1
        return {k: np.array(v, copy=True) for k, v in a.items()} if isinstance(a, dict) else a
