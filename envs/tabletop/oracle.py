"""The scripted expert, exposed the same way for our suite and the adapter: ``oracle.act(obs, info)``."""

from __future__ import annotations

from typing import Any

import numpy as np


class TabletopOracle:
    """Acts from the env's privileged state (object poses, goals); ``obs``/``info`` are accepted so that it is
    a drop-in policy. Returns an action dict, or None when it has nothing sensible to do (like VIMA's)."""

    def __init__(self, env: Any, seed: int | None = None) -> None:
        self.env = env
        self.rng = np.random.default_rng(seed)

    def act(self, obs: Any = None, info: Any = None) -> dict[str, np.ndarray] | None:
        env = self.env
        if env.task is None:
            raise RuntimeError("call env.reset() before asking the oracle")
        action = env.task.oracle_action(env.world, self.rng)
        if action is None:
            return None
        lo, hi = env.action_space["pose0_position"].low, env.action_space["pose0_position"].high
        for k in ("pose0_position", "pose1_position"):
            action[k] = np.clip(action[k], lo, hi).astype(np.float32)
        return action
