"""The Habitat adapter: conversion logic against a stand-in env, and the real thing when installed."""

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
from gymnasium import spaces

from envs.habitat import HabitatPointNavEnv, import_habitat


class FakeHabitatEnv:
    """Mimics habitat.Env's surface: dict observations, metrics dict, episode_over, task.is_stop_called."""

    def __init__(self, max_steps=5):
        self._max_episode_steps = max_steps
        self.observation_space = SimpleNamespace(
            spaces={
                "rgb": spaces.Box(0, 255, (8, 8, 3), np.uint8),
                "depth": spaces.Box(0.0, 1.0, (8, 8, 1), np.float32),
                "pointgoal_with_gps_compass": spaces.Box(-np.inf, np.inf, (2,), np.float32),
            }
        )
        self.task = SimpleNamespace(is_stop_called=False)
        self.current_episode = SimpleNamespace(episode_id=7, scene_id="data/scene_datasets/x.glb")
        self.steps, self.episode_over, self.seeded = 0, False, None

    def seed(self, s):
        self.seeded = s

    def reset(self):
        self.steps, self.episode_over, self.task.is_stop_called = 0, False, False
        return self._obs()

    def _obs(self):
        return {
            "rgb": np.zeros((8, 8, 3), np.uint8),
            "depth": np.zeros((8, 8, 1), np.float32),
            "pointgoal_with_gps_compass": np.array([3.0 - 0.25 * self.steps, 0.1], np.float32),
            "gps": 0,
        }

    def step(self, action):
        assert isinstance(action, dict) and action["action"] in (0, 1, 2, 3)
        self.steps += 1
        self.task.is_stop_called = action["action"] == 0
        self.episode_over = self.task.is_stop_called or self.steps >= self._max_episode_steps
        return self._obs()

    def get_metrics(self):
        d = 3.0 - 0.25 * self.steps
        ok = float(self.task.is_stop_called and d < 0.2)
        return {
            "distance_to_goal": d,
            "success": ok,
            "spl": ok,
            "soft_spl": 0.5,
            "collisions": {"count": self.steps // 2, "is_collision": False},
        }


def test_adapter_converts_to_gymnasium_and_our_info_keys():
    env = HabitatPointNavEnv(habitat_env=FakeHabitatEnv())
    obs, info = env.reset(seed=3)
    assert env._env.seeded == 3
    assert set(obs) == {"rgb", "depth", "pointgoal_with_gps_compass"} and env.observation_space.contains(obs)
    obs, reward, term, trunc, info = env.step(1)
    assert (term, trunc) == (False, False)
    assert reward == pytest.approx(0.25 - 0.01)
    assert info["collisions"] == 0 and info["success"] is False
    assert info["episode_id"] == "7" and isinstance(info["scene_id"], str)
    obs, reward, term, trunc, info = env.step(0)
    assert term and not trunc  # STOP terminates
    with pytest.raises(RuntimeError):
        env.step(1)


def test_adapter_truncates_at_the_step_limit_and_rejects_bad_actions():
    env = HabitatPointNavEnv(habitat_env=FakeHabitatEnv(max_steps=3))
    env.reset()
    with pytest.raises(ValueError, match="invalid action"):
        env.step(7)
    results = [env.step(2)[2:4] for _ in range(3)]
    assert results == [(False, False), (False, False), (False, True)]


def test_missing_habitat_gives_install_hint():
    if importlib.util.find_spec("habitat") is not None:
        pytest.skip("habitat-lab is installed")
    with pytest.raises(ImportError, match="conda"):
        import_habitat()


@pytest.mark.skipif(
    importlib.util.find_spec("habitat") is None,
    reason="habitat-lab/habitat-sim not installed (conda only; see docs/habitat.md)",
)
def test_real_habitat_pointnav():
    env = HabitatPointNavEnv(width=64, height=64)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    _, _, term, _, info = env.step(0)
    assert term and "spl" in info and "soft_spl" in info
