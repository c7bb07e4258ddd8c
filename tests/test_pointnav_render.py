"""Rendering against geometry worked out by hand, and the fast ray caster against the former TinyRenderer."""

import math

import numpy as np
import pytest

from envs.pointnav.navmesh import NavGrid
from envs.pointnav.render import SceneRenderer
from envs.pointnav.render_tiny import TinyRendererReference
from envs.pointnav.scene import Box, FloorPatch, Scene, procedural_scene, scene_from_occupancy

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
    scene = procedural_scene(2)
    nav = NavGrid(scene)
    fast = TinyRendererReference(scene, 48, 48, analytic_planes=True)
    slow = TinyRendererReference(scene, 48, 48, analytic_planes=False)
    rng = np.random.default_rng(0)
    for _ in range(3):
        p, yaw = nav.sample_navigable(rng), float(rng.uniform(-math.pi, math.pi))
        rgb_a, depth_a = fast.render(p, yaw)
        rgb_b, depth_b = slow.render(p, yaw)
        assert (np.abs(rgb_a.astype(int) - rgb_b).max(axis=2) > 20).mean() < 0.05
        assert np.median(np.abs(depth_a - depth_b)) < 0.002
        assert np.abs(depth_a - depth_b).max() < 0.05


def _neighbourhood_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pixel, the smallest |a - b| over the 3x3 pixels of b around it (max over colour channels)."""
    pad = np.pad(b, [(1, 1), (1, 1)] + [(0, 0)] * (b.ndim - 2), mode="edge")
    h, w = a.shape[:2]
    e = np.stack([np.abs(a - pad[i : i + h, j : j + w]) for i in range(3) for j in range(3)])
    return (e.max(axis=3) if e.ndim == 4 else e).min(axis=0)


def test_ray_caster_matches_the_former_tinyrenderer_images():
    """Same surfaces, depths and colours as TinyRenderer, up to what TinyRenderer itself does inexactly.

    A pixel agrees when one of the reference's 3x3 pixels around it has its depth within 5% and its
    colour within 24 levels. TinyRenderer is the approximate one where they disagree: it interpolates
    depth linearly in screen space across 1.5 m tiles and snaps edges to whole pixels (a face close to
    the camera comes out a pixel wider), and it adds a view-dependent specular term (we shade each
    face flatly with the median it gives), which is the colour gap on some large walls.
    """
    depth_ok, colour_ok = [], []
    for seed in (1, 6, 11):
        scene = procedural_scene(seed)
        nav = NavGrid(scene)
        fast, ref = SceneRenderer(scene, 64, 64), TinyRendererReference(scene, 64, 64)
        rng = np.random.default_rng(seed)
        for _ in range(4):
            p, yaw = nav.sample_navigable(rng), float(rng.uniform(-math.pi, math.pi))
            rgb_a, depth_a = fast.render(p, yaw)
            rgb_b, depth_b = ref.render(p, yaw)
            assert rgb_a.shape == rgb_b.shape and rgb_a.dtype == rgb_b.dtype
            assert depth_a.shape == depth_b.shape and depth_a.dtype == depth_b.dtype
            d_err = _neighbourhood_error(depth_a[..., 0], depth_b[..., 0]) / np.maximum(depth_b[..., 0], 0.05)
            c_err = _neighbourhood_error(rgb_a.astype(int), rgb_b.astype(int))
            depth_ok.append(float((d_err < 0.05).mean()))
            colour_ok.append(float((c_err <= 24).mean()))
            assert abs(float(rgb_a.mean()) - float(rgb_b.mean())) < 8.0  # no overall brightness shift
    assert min(depth_ok) > 0.93 and np.mean(depth_ok) > 0.97, depth_ok
    assert min(colour_ok) > 0.85 and np.mean(colour_ok) > 0.97, colour_ok


def test_ray_caster_depth_is_exact_on_a_furniture_top():
    occ = np.zeros((60, 80), dtype=bool)
    occ[:, 40:60] = True
    boxes = [Box(2.0, 0.0, 3.0, 3.0, 0.5, (0.2, 0.3, 0.6)), Box(0.0, -1.0, 4.0, 0.0, 2.5, (0.9, 0.9, 0.9))]
    scene = Scene("test:table", occ, boxes=boxes, floors=[FloorPatch(0.0, 0.0, 4.0, 3.0, (0.5, 0.5, 0.5))])
    r = SceneRenderer(scene, 64, 64)
    _, depth = r.render(np.array([1.0, 1.5]), EAST)
    # Row 47 looks down by 15.5 / 32 per metre ahead: the top (0.75 m below the camera) at 0.75 / that.
    np.testing.assert_allclose(depth[47, 28:36, 0], 0.75 / (15.5 / 32) / 10.0, rtol=1e-6)
    # The table's side face (x = 2.0, 1 m ahead) fills the rows between its top edge and the floor.
    np.testing.assert_allclose(depth[60, 28:36, 0], 0.1, rtol=1e-6)
