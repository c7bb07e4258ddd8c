"""Procedural houses and occupancy-image plans."""

import numpy as np
import pytest
from scipy import ndimage

from envs.pointnav.env import PointNavEnv
from envs.pointnav.navmesh import NavGrid
from envs.pointnav.scene import merge_rectangles, procedural_scene, read_occupancy_image, scene_from_id


@pytest.mark.parametrize("seed", [0, 5, 9])
def test_houses_are_home_sized_connected_and_varied(seed):
    scene = procedural_scene(seed)
    nav = NavGrid(scene)
    area = nav.navigable.sum() * scene.resolution**2
    assert 25.0 < area < 160.0
    assert len(scene.floors) - 1 >= 3  # several rooms
    free = ~scene.occupancy
    _, n_free = ndimage.label(free)
    assert n_free == 1  # doors join every room
    assert nav.navigable.sum() > 0.5 * free.sum()
    assert len({f.color for f in scene.floors}) >= 2


def test_houses_are_deterministic_per_seed():
    a, b, c = procedural_scene(3), procedural_scene(3), procedural_scene(4)
    np.testing.assert_array_equal(a.occupancy, b.occupancy)
    assert a.boxes == b.boxes
    assert a.occupancy.shape != c.occupancy.shape or not np.array_equal(a.occupancy, c.occupancy)
    assert scene_from_id("procedural:3").boxes == a.boxes


def test_merged_rectangles_cover_exactly():
    rng = np.random.default_rng(0)
    mask = rng.random((30, 40)) < 0.3
    mask[5:20, 10:30] = True
    rects = merge_rectangles(mask)
    cover = np.zeros(mask.shape, dtype=int)
    for r0, c0, r1, c1 in rects:
        cover[r0:r1, c0:c1] += 1
    np.testing.assert_array_equal(cover, mask.astype(int))
    assert len(rects) < mask.sum()


def test_occupancy_image_pgm_drives_the_env(tmp_path):
    img = np.full((40, 60), 255, dtype=np.uint8)
    img[:, 28:30] = 0
    img[15:25, 28:30] = 255  # a doorway
    path = tmp_path / "plan.pgm"
    path.write_bytes(b"P5\n# plan\n60 40\n255\n" + img.tobytes())
    np.testing.assert_array_equal(read_occupancy_image(path), img)
    env = PointNavEnv(width=8, height=8, scene=str(path))
    _obs, info = env.reset(seed=0)
    assert info["scene_id"] == f"occupancy:{path}"
    assert 1.0 <= info["distance_to_goal"] <= 30.0
    bad = tmp_path / "bad.pgm"
    bad.write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="not a PGM"):
        read_occupancy_image(bad)
