"""Sliding along walls, collision counting and geodesic distances on hand-built plans."""

import math

import numpy as np
import pytest

from envs.pointnav.env import MOVE_FORWARD, PointNavEnv
from envs.pointnav.geometry import yaw_to_quaternion
from envs.pointnav.navmesh import NavGrid
from envs.pointnav.scene import scene_from_occupancy


def _episode(start, goal, yaw):
    return {
        "episode_id": "0",
        "scene_id": "test:room",
        "start_position": [start[0], 0.0, start[1]],
        "start_rotation": yaw_to_quaternion(yaw),
        "goals": [{"position": [goal[0], 0.0, goal[1]]}],
    }


def test_moving_into_a_wall_at_an_angle_slides_along_it_and_counts_collisions():
    scene = scene_from_occupancy(np.zeros((60, 80), dtype=bool), scene_id="test:room")
    env = PointNavEnv(width=16, height=16, scene=scene)
    # Face 45 degrees between +x and -z, 0.3 m from the wall at z = 0.05.
    env.reset(options={"episode": _episode((1.0, 0.35), (3.5, 2.5), yaw=-math.pi / 4)})
    xs, zs, collisions = [], [], []
    for _ in range(6):
        _, _, _, _, info = env.step(MOVE_FORWARD)
        xs.append(env.agent_position[0])
        zs.append(env.agent_position[1])
        collisions.append(info["collisions"])
    step_x = 0.25 / math.sqrt(2)
    assert np.diff(xs) == pytest.approx([step_x] * 5, abs=0.02)  # keeps advancing along the wall
    assert max(zs[2:]) - min(zs[2:]) < 1e-9  # pinned against the wall
    assert zs[-1] >= 0.05 + 0.1  # never inside the wall or closer than the radius
    assert collisions[0] == 0 and collisions[-1] >= 4  # counted once per blocked step
    assert info["collided"] is True


def test_head_on_wall_blocks_without_moving_through():
    nav = NavGrid(scene_from_occupancy(np.zeros((60, 80), dtype=bool)))
    p = nav.try_step(np.array([1.0, 0.3]), np.array([0.0, -0.25]))
    assert p[0] == pytest.approx(1.0) and 0.15 <= p[1] < 0.3


def test_geodesic_goes_around_a_wall():
    occ = np.zeros((60, 80), dtype=bool)
    occ[:40, 39:41] = True  # wall x in [1.95, 2.05] from z = 0 to 2.0 (before the border pad)
    nav = NavGrid(scene_from_occupancy(occ))
    a, b = np.array([1.0, 0.5]), np.array([3.0, 0.5])
    field = nav.goal_field(b)
    d = nav.geodesic_distance(a, field)
    # Around the wall end at about (2.05, 2.05) with 0.1 m agent radius: ~2 x 1.85 + ~0.3.
    corner = np.array([2.05, 2.05 + 0.15])
    lower = 2 * float(np.hypot(*(corner - a))) - 0.1
    assert lower < d < lower * 1.08
    assert nav.geodesic_distance(a, nav.goal_field(a + np.array([0.0, 1.0]))) == pytest.approx(1.0, abs=1e-9)


def test_geodesic_is_infinite_to_an_unreachable_island():
    occ = np.zeros((60, 80), dtype=bool)
    occ[:, 29:31] = True  # cut the room in two: 1.5 m and 2.4 m wide
    nav = NavGrid(scene_from_occupancy(occ))
    small_side, big_side = np.array([0.7, 1.5]), np.array([3.0, 1.5])
    assert nav.is_navigable(big_side)
    assert not nav.is_navigable(small_side)  # the smaller island is dropped, as Habitat's generator does
    field = nav.goal_field(big_side)
    assert math.isinf(nav.geodesic_distance(small_side, field))
    assert nav.geodesic_distance(np.array([2.5, 1.5]), field) == pytest.approx(0.5)
