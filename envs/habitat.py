"""Adapter: habitat-lab's PointNav behind the same Gymnasium spaces and `info` keys as uio2/PointNav-v0.

habitat-lab's own gym wrapper uses old `gym` (4-tuple steps, no `truncated`), so this adapter drives
`habitat.Env` directly and converts: `terminated` = STOP was called (STOP ends a Habitat episode),
`truncated` = the step limit was reached without STOP (counted here, since Habitat has no flag for it),
`info` = distance_to_goal, success (bool), spl, soft_spl, collisions (count), episode_id, scene_id.
The reward matches ours and habitat-baselines': -delta(distance_to_goal) - 0.01 + 2.5 on success.

habitat-lab and habitat-sim are imported lazily, only when no `habitat_env` is passed in; see
docs/habitat.md for installing them (conda) and getting Gibson / HM3D episodes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.pointnav.actions import STOP, parse_action
from uio2_errors import MissingDependencyError

OBS_KEYS = ("rgb", "depth", "pointgoal_with_gps_compass")
DEFAULT_CONFIG = "benchmark/nav/pointnav/pointnav_habitat_test.yaml"
SLACK_REWARD = -0.01
SUCCESS_REWARD = 2.5


def import_habitat() -> Any:
    """Import habitat-lab, or raise an ImportError that says how to get it."""
    try:
        import habitat
    except ImportError as e:
        raise MissingDependencyError(
            "habitat/<config> envs need habitat-lab and habitat-sim, which have no Linux pip wheel: in a "
            "Python 3.11 conda env, `conda install habitat-sim withbullet headless -c conda-forge "
            "-c aihabitat-nightly`, then `pip install habitat-lab` (see docs/habitat.md)"
        ) from e
    return habitat


def make_habitat_env(
    config_path: str = DEFAULT_CONFIG,
    overrides: list[str] | tuple[str, ...] = (),
    episodes: str | None = None,
    width: int | None = None,
    height: int | None = None,
) -> Any:
    """Build a `habitat.Env` for PointNav with soft_spl and collisions measured as well."""
    habitat = import_habitat()
    from habitat.config import read_write
    from habitat.config.default_structured_configs import (
        CollisionsMeasurementConfig,
        SoftSPLMeasurementConfig,
    )

    opts = list(overrides)
    sensors = "habitat.simulator.agents.main_agent.sim_sensors"
    for sensor in ("rgb_sensor", "depth_sensor"):
        if width is not None:
            opts.append(f"{sensors}.{sensor}.width={int(width)}")
        if height is not None:
            opts.append(f"{sensors}.{sensor}.height={int(height)}")
    if episodes is not None:
        opts.append(f"habitat.dataset.data_path={episodes}")
    config = habitat.get_config(config_path, overrides=opts)
    with read_write(config):
        measurements = config.habitat.task.measurements
        if "soft_spl" not in measurements:
            measurements.update({"soft_spl": SoftSPLMeasurementConfig()})
        if "collisions" not in measurements:
            measurements.update({"collisions": CollisionsMeasurementConfig()})
    return habitat.Env(config=config)


def _to_box(space: Any, key: str) -> spaces.Box:
    """An old-gym (or gymnasium) Box as a gymnasium Box with the same bounds, shape and dtype."""
    try:
        low, high = np.asarray(space.low), np.asarray(space.high)
        return spaces.Box(low=low, high=high, shape=tuple(space.shape), dtype=space.dtype)
    except AttributeError as e:
        raise TypeError(f"habitat observation space {key!r} is not a Box: {space!r}") from e


class HabitatPointNavEnv(gym.Env):
    """Habitat PointNav as a Gymnasium env with uio2/PointNav-v0's spaces and info keys.

    Pass `habitat_env` to wrap an env you built yourself (anything with habitat.Env's `reset`, `step`,
    `get_metrics`, `episode_over`, `current_episode` and `observation_space`); otherwise one is built
    from `config_path` + `overrides` (+ `episodes`, a PointNav-v1 file, e.g. one we generated).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        config_path: str = DEFAULT_CONFIG,
        overrides: list[str] | tuple[str, ...] = (),
        episodes: str | None = None,
        width: int | None = None,
        height: int | None = None,
        max_episode_steps: int | None = None,
        habitat_env: Any | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        self.render_mode = render_mode
        if habitat_env is None:
            habitat_env = make_habitat_env(config_path, overrides, episodes, width, height)
        self._env = habitat_env
        if max_episode_steps is None:
            max_episode_steps = int(getattr(habitat_env, "_max_episode_steps", 0) or 500)
        self.max_episode_steps = int(max_episode_steps)
        hab_spaces = habitat_env.observation_space.spaces
        missing = [k for k in OBS_KEYS if k not in hab_spaces]
        if missing:
            raise ValueError(
                f"the Habitat config does not provide observation(s) {missing}; has {list(hab_spaces)}"
            )
        self.observation_space = spaces.Dict({k: _to_box(hab_spaces[k], k) for k in OBS_KEYS})
        self.action_space = spaces.Discrete(4)
        self._steps = 0
        self._done = True
        self._last_obs: dict[str, np.ndarray] | None = None
        self._distance = 0.0

    def _convert_obs(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        out = {}
        for k in OBS_KEYS:
            box = self.observation_space[k]
            out[k] = np.asarray(obs[k], dtype=box.dtype).reshape(box.shape)
        self._last_obs = out
        return out

    def _info(self) -> dict[str, Any]:
        m = self._env.get_metrics()
        collisions = m.get("collisions") or {}
        count = collisions.get("count", 0) if isinstance(collisions, dict) else int(collisions)
        ep = self._env.current_episode
        return {
            "distance_to_goal": float(m.get("distance_to_goal", np.nan)),
            "success": bool(m.get("success", 0.0)),
            "spl": float(m.get("spl", 0.0)),
            "soft_spl": float(m.get("soft_spl", 0.0)),
            "collisions": int(count),
            "collided": bool(collisions.get("is_collision", False))
            if isinstance(collisions, dict)
            else False,
            "num_steps": self._steps,
            "episode_id": str(ep.episode_id),
            "scene_id": str(ep.scene_id),
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        if seed is not None and hasattr(self._env, "seed"):
            self._env.seed(seed)
        obs = self._env.reset()
        self._steps = 0
        self._done = False
        info = self._info()
        self._distance = info["distance_to_goal"]
        return self._convert_obs(obs), info

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        a = parse_action(action)
        if self._done:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset()")
        obs = self._env.step({"action": a})
        self._steps += 1
        info = self._info()
        task = getattr(self._env, "task", None)
        terminated = bool(getattr(task, "is_stop_called", a == STOP))
        truncated = not terminated and (self._steps >= self.max_episode_steps or bool(self._env.episode_over))
        self._done = terminated or truncated
        d = info["distance_to_goal"]
        reward = -(d - self._distance) + SLACK_REWARD + (SUCCESS_REWARD if info["success"] else 0.0)
        self._distance = d
        return self._convert_obs(obs), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None or self._last_obs is None:
            return None
        return self._last_obs["rgb"]

    def close(self) -> None:
        if hasattr(self._env, "close"):
            self._env.close()
