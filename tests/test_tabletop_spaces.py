"""Spaces and action validation shared by our tabletop suite and the VIMA-Bench adapter."""

import numpy as np
import pytest

from envs.tabletop import make_tabletop
from envs.tabletop.spaces import ACTION_KEYS, action_space, observation_space, sanitize_action
from envs.vima_bench import VimaBenchEnv


def _good_action() -> dict:
    return {
        "pose0_position": np.array([0.5, 0.0], np.float32),
        "pose0_rotation": np.array([0, 0, 0, 1], np.float32),
        "pose1_position": np.array([0.6, 0.1], np.float32),
        "pose1_rotation": np.array([0, 0, 0, 1], np.float32),
    }


def test_spaces_match_the_benchmark_layout():
    obs = observation_space()
    assert set(obs.spaces) == {"rgb", "segm", "ee"}
    for view in ("front", "top"):
        assert obs["rgb"][view].shape == (3, 128, 256) and obs["rgb"][view].dtype == np.uint8
        assert obs["segm"][view].shape == (128, 256) and obs["segm"][view].dtype == np.uint8
    assert obs["ee"].n == 2
    act = action_space()
    assert list(act.spaces) == sorted(ACTION_KEYS)
    np.testing.assert_allclose(act["pose0_position"].low, [0.25, -0.5])
    np.testing.assert_allclose(act["pose1_position"].high, [0.75, 0.5])
    assert all(act[k].dtype == np.float32 for k in ACTION_KEYS)


def test_suite_and_adapter_declare_identical_spaces():
    env = make_tabletop("visual_manipulation")
    try:
        # the adapter declares its spaces without vima_bench installed
        obs_space, act_space = VimaBenchEnv.declared_spaces()
        assert env.observation_space == obs_space
        assert env.action_space == act_space
    finally:
        env.close()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a: a.pop("pose1_rotation"), "missing"),
        (lambda a: a.update(extra=np.zeros(2)), "unexpected"),
        (lambda a: a.update(pose0_position=np.zeros(3)), "shape"),
        (lambda a: a.update(pose1_rotation=np.array([np.nan, 0, 0, 1])), "NaN"),
        (lambda a: a.update(pose0_position="abc"), "numeric"),
    ],
)
def test_bad_actions_raise_clear_errors(mutate, message):
    action = _good_action()
    mutate(action)
    with pytest.raises(ValueError, match=message):
        sanitize_action(action)
    with pytest.raises(ValueError, match="dict"):
        sanitize_action([1, 2, 3])


def test_float64_and_out_of_bounds_are_cast_and_clipped():
    action = {k: np.asarray(v, np.float64) for k, v in _good_action().items()}
    action["pose0_position"] = np.array([2.0, -3.0])
    action["pose1_rotation"] = np.array([0.0, 0.0, 0.0, 0.0])
    out = sanitize_action(action)
    assert all(v.dtype == np.float32 for v in out.values())
    np.testing.assert_allclose(out["pose0_position"], [0.75, -0.5])
    np.testing.assert_allclose(out["pose1_rotation"], [0, 0, 0, 1])
    assert action_space().contains(out)


def test_env_survives_bad_actions():
    env = make_tabletop("visual_manipulation")
    try:
        env.reset(seed=0)
        with pytest.raises(ValueError):
            env.step({"pose0_position": np.array([np.inf, 0.0])})
        assert env.elapsed == 0  # the rejected action did not count as a step
        far = {k: np.asarray(v, np.float64) * 10 for k, v in _good_action().items()}
        obs, _, _, _, info = env.step(far)  # clipped like the benchmark's scripts, no simulator crash
        assert env.observation_space.contains(obs) and isinstance(info["success"], bool)
    finally:
        env.close()
