"""SPL, soft-SPL, success and the GPS+compass signs on hand-built cases (an empty 4 m x 3 m room)."""

import math

import numpy as np
import pytest

from envs.pointnav.env import MOVE_FORWARD, STOP, TURN_LEFT, PointNavEnv
from envs.pointnav.geometry import pointgoal_polar, quaternion_to_yaw, yaw_to_quaternion
from envs.pointnav.metrics import soft_spl, spl, success
from envs.pointnav.scene import scene_from_occupancy

EAST = -math.pi / 2  # yaw whose forward vector is +x


def room_env(max_steps: int = 500) -> PointNavEnv:
    scene = scene_from_occupancy(np.zeros((60, 80), dtype=bool), scene_id="test:room")
    return PointNavEnv(width=16, height=16, scene=scene, max_episode_steps=max_steps)


def episode(start, goal, yaw=EAST):
    return {
        "episode_id": "hand",
        "scene_id": "test:room",
        "start_position": [start[0], 0.0, start[1]],
        "start_rotation": yaw_to_quaternion(yaw),
        "goals": [{"position": [goal[0], 0.0, goal[1]], "radius": None}],
        "info": {"geodesic_distance": float(np.hypot(goal[0] - start[0], goal[1] - start[1]))},
    }


def run(env, actions, ep):
    obs, info = env.reset(seed=0, options={"episode": ep})
    out = []
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        out.append((obs, r, term, trunc, info))
        if term or trunc:
            break
    return out


def test_spl_is_one_on_a_straight_path_with_stop():
    env = room_env()
    steps = run(env, [MOVE_FORWARD] * 8 + [STOP], episode((1.0, 1.5), (3.0, 1.5)))
    *_, (_obs, reward, term, trunc, info) = steps
    assert term and not trunc
    assert info["success"] is True
    assert info["spl"] == pytest.approx(1.0, abs=1e-6)
    assert info["distance_to_goal"] == pytest.approx(0.0, abs=1e-6)
    assert reward == pytest.approx(2.5 - 0.01, abs=1e-6)


def test_spl_is_zero_without_stop_even_at_the_goal():
    env = room_env(max_steps=8)
    *_, (_obs, _reward, term, trunc, info) = run(env, [MOVE_FORWARD] * 8, episode((1.0, 1.5), (3.0, 1.5)))
    assert trunc and not term
    assert info["distance_to_goal"] < 0.2
    assert info["success"] is False and info["spl"] == 0.0
    assert info["soft_spl"] == pytest.approx(1.0, abs=1e-6)


def test_stop_too_far_fails_and_soft_spl_follows_its_definition():
    env = room_env()
    # Walk 1 m of a 2 m path, then STOP: soft = (1 - 1/2) * 2 / max(2, 1) = 0.5.
    *_, (_, _, term, _, info) = run(env, [MOVE_FORWARD] * 4 + [STOP], episode((1.0, 1.5), (3.0, 1.5)))
    assert term and info["success"] is False and info["spl"] == 0.0
    assert info["soft_spl"] == pytest.approx(0.5, abs=1e-6)
    # Overshoot by 0.5 m (walked 2.5 m): soft = (1 - 0.5/2) * 2 / 2.5 = 0.6.
    steps = run(env, [MOVE_FORWARD] * 10, episode((1.0, 1.5), (3.0, 1.5)))
    assert steps[-1][4]["soft_spl"] == pytest.approx(0.6, abs=1e-6)


def test_metric_functions_on_numbers():
    assert success(True, 0.19) and not success(True, 0.2) and not success(False, 0.0)
    assert spl(True, 4.0, 5.0) == pytest.approx(0.8)
    assert spl(True, 4.0, 3.0) == pytest.approx(1.0)  # max(L, P), not P
    assert spl(False, 4.0, 4.0) == 0.0
    assert soft_spl(1.0, 4.0, 8.0) == pytest.approx(0.75 * 0.5)
    assert soft_spl(5.0, 4.0, 1.0) == 0.0


@pytest.mark.parametrize(
    ("goal", "phi"),
    [((2.0, 0.5), 0.0), ((1.0, 1.5), math.pi / 2), ((3.0, 1.5), -math.pi / 2)],
)
def test_pointgoal_signs_facing_minus_z(goal, phi):
    out = pointgoal_polar(np.array([2.0, 1.5]), 0.0, np.array(goal))
    assert out.dtype == np.float32 and out.shape == (2,)
    assert out[0] == pytest.approx(1.0, abs=1e-6)
    assert out[1] == pytest.approx(phi, abs=1e-6)


def test_pointgoal_behind_and_after_turning():
    behind = pointgoal_polar(np.array([2.0, 1.5]), 0.0, np.array([2.0, 2.5]))
    assert abs(behind[1]) == pytest.approx(math.pi, abs=1e-6)
    env = room_env()
    obs, _ = env.reset(options={"episode": episode((2.0, 1.5), (1.0, 1.5), yaw=0.0)})
    assert obs["pointgoal_with_gps_compass"][1] == pytest.approx(math.pi / 2, abs=1e-5)  # left
    for _ in range(9):  # 9 x 10 deg to the left: now facing the goal
        obs, *_ = env.step(TURN_LEFT)
    assert obs["pointgoal_with_gps_compass"][1] == pytest.approx(0.0, abs=1e-5)
    assert obs["pointgoal_with_gps_compass"][0] == pytest.approx(1.0, abs=1e-5)


def test_quaternion_yaw_round_trip():
    for yaw in (-3.0, -1.0, 0.0, 0.5, 2.9):
        assert quaternion_to_yaw(yaw_to_quaternion(yaw)) == pytest.approx(yaw, abs=1e-9)
