"""Rendering against geometry worked out by hand: wall and furniture depths, Habitat's camera frame."""

import math

import numpy as np
import pytest

from envs.pointnav.render import SceneRenderer
from envs.pointnav.scene import Box, FloorPatch, Scene, scene_from_occupancy

EAST = -math.pi / 2  # yaw whose forward vector is +x


def test_depth_to_the_facing_wall_is_its_distance_over_10m():
    # Free space x in [0.05, 4.05] (the border wall is padded around it).
    scene = scene_from_occupancy(np.zeros((60, 80), dtype=bool))
    r = SceneRenderer(scene, 64, 64)
    _, depth = r.render(np.array([1.0, 1.5]), EAST)
    assert depth.shape == (64, 64, 1) and depth.dtype == np.float32
    assert depth[31:33, 31:33].mean() == pytest.approx((4.05 - 1.0) / 10.0, abs=0.005)
    _, depth_west = r.render(np.array([1.0, 1.5]), EAST + math.pi)
    assert depth_west[31:33, 31:33].mean() == pytest.approx((1.0 - 0.05) / 10.0, abs=0.005)
    # Facing -z (yaw 0): the wall at z = 0.05 is 1.45 m ahead.
    _, depth_north = r.render(np.array([1.0, 1.5]), 0.0)
    assert depth_north[31:33, 31:33].mean() == pytest.approx(0.145, abs=0.005)


def test_furniture_top_is_seen_from_above_at_the_right_depth():
    occ = np.zeros((60, 80), dtype=bool)
    occ[:, 40:60] = True
    boxes = [Box(2.0, 0.0, 3.0, 3.0, 0.5, (0.2, 0.3, 0.6))]
    scene = Scene("test:table", occ, boxes=boxes, floors=[FloorPatch(0.0, 0.0, 4.0, 3.0, (0.5, 0.5, 0.5))])
    rgb, depth = SceneRenderer(scene, 64, 64).render(np.array([1.0, 1.5]), EAST)
    # Row 47 looks down by atan(15.5 / 32): it meets the table top (0.75 m below the camera) 1.55 m ahead.
    expected = 0.75 / (15.5 / 32) / 10.0
    assert depth[47, 28:36].mean() == pytest.approx(expected, abs=0.005)
    assert abs(int(rgb[47, 32, 2]) - int(rgb[47, 32, 0])) > 40  # the table's blue, not the grey floor


def test_analytic_floor_and_ceiling_match_rasterized_planes():
    from envs.pointnav.navmesh import NavGrid
    from envs.pointnav.scene import procedural_scene

    scene = procedural_scene(2)
    nav = NavGrid(scene)
    fast = SceneRenderer(scene, 48, 48, analytic_planes=True)
    slow = SceneRenderer(scene, 48, 48, analytic_planes=False)
    rng = np.random.default_rng(0)
    for _ in range(5):
        p, yaw = nav.sample_navigable(rng), float(rng.uniform(-math.pi, math.pi))
        rgb_a, depth_a = fast.render(p, yaw)
        rgb_b, depth_b = slow.render(p, yaw)
        assert (np.abs(rgb_a.astype(int) - rgb_b).max(axis=2) > 20).mean() < 0.05
        assert np.median(np.abs(depth_a - depth_b)) < 0.002
        assert np.abs(depth_a - depth_b).max() < 0.05
