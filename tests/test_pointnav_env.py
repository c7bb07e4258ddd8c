"""The Gymnasium contract: registration, check_env, determinism, vector envs, render, errors, oracle."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.pointnav import ENV_IDS, Oracle, register_envs
from envs.pointnav.env import PointNavEnv
from envs.pointnav.oracle import run_oracle_episode


def test_register_is_idempotent_and_ids_make():
    register_envs()
    register_envs()
    for env_id in ENV_IDS:
        assert env_id in gym.registry
    env = gym.make("uio2/PointNav-v0", width=16, height=16, scene_seed=2)
    obs, info = env.reset(seed=0)
    assert obs["rgb"].shape == (16, 16, 3) and obs["depth"].shape == (16, 16, 1)
    for key in ("distance_to_goal", "success", "spl", "soft_spl", "collisions", "episode_id", "scene_id"):
        assert key in info
    env.close()


def test_check_env_is_clean(recwarn):
    register_envs()
    env = gym.make("uio2/PointNav-v0", width=24, height=16, scene_seed=1, render_mode="rgb_array").unwrapped
    check_env(env, skip_render_check=False)
    assert not [w for w in recwarn.list if "gymnasium" in str(w.filename)], [str(w.message) for w in recwarn]


def test_seed_determinism_and_spaces():
    a, b = PointNavEnv(width=16, height=16, num_scenes=5), PointNavEnv(width=16, height=16, num_scenes=5)
    oa, ia = a.reset(seed=11)
    ob, ib = b.reset(seed=11)
    assert ia == ib
    for k in oa:
        np.testing.assert_array_equal(oa[k], ob[k])
    assert a.observation_space.contains(oa)
    for act in (1, 2, 1, 3, 1):
        ra, rb = a.step(act), b.step(act)
        np.testing.assert_array_equal(ra[0]["rgb"], rb[0]["rgb"])
        assert ra[1:] == rb[1:]
    _oc, ic = a.reset(seed=12)
    assert (ic["episode_id"], ic["scene_id"]) != (ia["episode_id"], ia["scene_id"])


def test_images_look_like_a_room():
    env = PointNavEnv(width=32, height=32, scene_seed=0)
    obs, _ = env.reset(seed=0)
    depth = obs["depth"][..., 0]
    assert depth.min() > 0.0 and depth.max() <= 1.0
    assert depth[-1].mean() < depth[16].mean()  # the floor at the bottom is nearer than the horizon
    assert obs["rgb"].std() > 3  # not a blank frame


def test_invalid_actions_and_step_after_end():
    env = PointNavEnv(width=8, height=8, scene_seed=0)
    env.reset(seed=0)
    for bad in (4, -1, 1.5, "forward", [1, 2]):
        with pytest.raises(ValueError, match="invalid action"):
            env.step(bad)
    env.step(np.int64(0))  # STOP ends the episode
    with pytest.raises(RuntimeError, match="reset"):
        env.step(1)


def test_truncation_at_the_step_limit():
    env = PointNavEnv(width=8, height=8, scene_seed=0, max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step(2)[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]


def test_render_has_the_map_beside_the_frame():
    env = PointNavEnv(width=32, height=32, scene_seed=0, render_mode="rgb_array")
    env.reset(seed=0)
    frame0 = env.render()
    for _ in range(3):
        env.step(1)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape[0] == 32 and frame.shape[1] > 32
    assert not np.array_equal(frame0[:, 32:], frame[:, 32:])  # the agent and path moved on the map


def test_sync_and_async_vector_envs():
    fns = [lambda: PointNavEnv(width=16, height=16, scene_seed=3) for _ in range(2)]
    for cls in (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv):
        venv = cls(fns)
        obs, info = venv.reset(seed=[0, 1])
        assert obs["rgb"].shape == (2, 16, 16, 3)
        for _ in range(3):
            obs, rew, _term, _trunc, info = venv.step(np.array([1, 2]))
        assert rew.shape == (2,) and info["distance_to_goal"].shape == (2,)
        venv.close()


def test_oracle_succeeds_on_a_few_episodes():
    env = PointNavEnv(width=8, height=8, num_scenes=50)
    results = [run_oracle_episode(env, seed=s) for s in range(4)]
    assert all(r["success"] for r in results)
    assert np.mean([r["spl"] for r in results]) > 0.85
    env.reset(seed=9)
    assert env.oracle_action() == Oracle(env).act() != 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 0}, "width and height"),
        ({"hfov": 180.0}, "hfov"),
        ({"max_episode_steps": 0}, "max_episode_steps"),
        ({"render_mode": "human"}, "render_mode"),
        ({"episodes": []}, "episode list is empty"),
        ({"episodes": [{"episode_id": 1}]}, r"episodes\[0\]\.scene_id"),
    ],
)
def test_bad_constructor_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PointNavEnv(**kwargs)
