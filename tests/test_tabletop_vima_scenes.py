"""Our tabletop scenes against figures measured on the real VIMA-Bench (tests/data/vima_scenes, README there):
object sizes in the top view, the table's place in both views, colours, the sweep tasks' boundary and bar,
and a rainbow texture that shows the whole spectrum."""

import json
import math
import os

import numpy as np
import pybullet as p
import pytest

from envs.tabletop import make_tabletop
from envs.tabletop.cameras import render, world_to_pixel
from envs.tabletop.engine import World

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "vima_scenes", "figures.json")
with open(DATA) as f:
    FIG = json.load(f)
SIZE_TOL = 0.12  # an object's median top-view extent within 12% of VIMA-Bench's


def _bbox(mask: np.ndarray) -> list[int]:
    r, c = np.nonzero(mask)
    return [int(r.min()), int(r.max()), int(c.min()), int(c.max())]


def _extents(world: World, name: str) -> float:
    """Median larger side (px) of the object's top-view mask at yaws 0, 22.5 and 45 degrees (VIMA's figure is
    a median over the random yaws of its scenes; for a square the median yaw is 22.5 degrees)."""
    body = world.add_object(name, "red", (0.5, 0.0), 0.0)
    sides = []
    for yaw in (0.0, math.pi / 8, math.pi / 4):
        world.set_pose(body, (0.5, 0.0, 0.0005), yaw)
        _, seg = render(world.client, views=("top",))
        r0, r1, c0, c1 = _bbox(seg["top"] == body)
        sides.append(max(r1 - r0, c1 - c0) + 1)
    p.removeBody(body, physicsClientId=world.client)
    return float(np.median(sides))


def test_object_sizes_match_vima_bench():
    world = World()
    try:
        world.reset()
        off = {}
        for name, fig in FIG["object_extent_px"].items():
            ours = _extents(world, name)
            if abs(ours / fig["median"] - 1.0) > SIZE_TOL:
                off[name] = (ours, fig["median"])
        assert not off, f"top-view extent px (ours, VIMA-Bench) off by more than {SIZE_TOL:.0%}: {off}"
    finally:
        world.close()


def test_table_camera_and_colours_match_vima_bench():
    env = make_tabletop("visual_manipulation")
    try:
        obs, _ = env.reset(seed=0)
        for view in ("top", "front"):
            seg, rgb = obs["segm"][view], obs["rgb"][view].transpose(1, 2, 0)
            got = _bbox(seg == 1)
            assert all(abs(a - b) <= 1 for a, b in zip(got, FIG["table_bbox"][view], strict=True)), (
                view,
                got,
            )
            assert np.abs(np.median(rgb[seg == 1], 0) - FIG["table_rgb"]).max() <= 2
            assert np.abs(np.median(rgb[seg == 0], 0) - FIG["background_rgb"]).max() <= 2
        # the workspace's near corner lands on VIMA-Bench's table corner in both views
        r0, _, c0, _ = FIG["table_bbox"]["top"]
        assert np.allclose(world_to_pixel("top", (0.25, -0.5, 0.0)), (r0, c0), atol=2.5)
        assert abs(world_to_pixel("front", (0.25, 0.0, 0.0))[0] - FIG["table_bbox"]["front"][0]) <= 1.5
    finally:
        env.close()


@pytest.mark.parametrize("task", ["sweep_without_exceeding", "sweep_without_touching"])
def test_sweep_boundary_and_bar_as_vima_bench(task):
    """The boundary lies at the robot's side (top rows of the top view) at VIMA-Bench's size, and the bar is
    a wide flat band, not a line."""
    fig = FIG["sweep"][task]
    env = make_tabletop(task)
    try:
        for seed in (0, 1):
            obs, info = env.reset(seed=seed)
            seg = obs["segm"]["top"]
            by_name = {v["obj_name"]: int(k) for k, v in info["meta_info"]["obj_id_to_info"].items()}
            b = _bbox(seg == by_name["three-sided rectangle"])
            bar = _bbox(seg == by_name["line"])
            h, w = b[1] - b[0] + 1, b[3] - b[2] + 1
            assert abs(h - fig["boundary_hw"][0]) <= 0.1 * fig["boundary_hw"][0], (seed, b)
            assert abs(w - fig["boundary_hw"][1]) <= 0.1 * fig["boundary_hw"][1], (seed, b)
            assert abs(b[0] - fig["boundary_bbox"][0]) <= 8 and abs(b[1] - fig["boundary_bbox"][1]) <= 8, b
            bh, bw = bar[1] - bar[0] + 1, bar[3] - bar[2] + 1
            assert abs(bh - fig["bar_hw"][0]) <= 2 and abs(bw - fig["bar_hw"][1]) <= 0.1 * fig["bar_hw"][1], (
                bar
            )
            assert abs((bar[0] + bar[1]) / 2 - (fig["bar_bbox"][0] + fig["bar_bbox"][1]) / 2) <= 10, bar
    finally:
        env.close()


def test_rainbow_shows_the_spectrum_on_every_shape():
    world = World()
    try:
        world.reset()
        for name in ("block", "cross", "heart"):
            body = world.add_object(name, "rainbow", (0.5, 0.0), 0.3)
            rgb, seg = render(world.client, views=("top",))
            px = rgb["top"].transpose(1, 2, 0)[seg["top"] == body].astype(float)
            hues = {
                int(h)
                for h in np.degrees(
                    np.arctan2(np.sqrt(3) * (px[:, 1] - px[:, 2]), 2 * px[:, 0] - px[:, 1] - px[:, 2])
                )
                // 60
            }
            assert len(hues) >= 5, (name, hues)  # of the six 60-degree hue sectors
            p.removeBody(body, physicsClientId=world.client)
    finally:
        world.close()
