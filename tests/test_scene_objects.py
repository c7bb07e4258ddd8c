"""The scene as objects (policies/scene_objects.py) against the real pybullet scene it describes."""

import numpy as np
import pytest

from envs.tabletop import make_tabletop
from envs.tabletop.cameras import world_to_pixel
from policies.scene_objects import object_ids, pixel_to_table, scene_objects


@pytest.mark.parametrize("x, y", [(0.3, -0.4), (0.5, 0.0), (0.7, 0.45)])
def test_top_view_mapping_is_the_cameras(x, y):
    row, col = world_to_pixel("top", (x, y, 0.0))
    assert pixel_to_table(row, col) == pytest.approx((x, y), abs=2e-3)


def test_objects_are_found_where_the_simulator_put_them():
    import pybullet as p

    env = make_tabletop("visual_manipulation")
    try:
        obs, info = env.reset(seed=3)
        meta = info["meta_info"]
        top = obs["rgb"]["top"].transpose(1, 2, 0)
        found = scene_objects(top, obs["segm"]["top"], meta["robot_components"])
        assert sorted(o.body_id for o in found) == sorted(meta["obj_id_to_info"])
        client = env.unwrapped.world.client
        for o in found:
            (x, y, _), _ = p.getBasePositionAndOrientation(o.body_id, physicsClientId=client)
            assert np.hypot(o.x - x, o.y - y) < 0.02, (o.body_id, o.x, o.y, x, y)  # the mask's centre
            assert o.crop.shape[0] == o.crop.shape[1] and o.crop.dtype == np.uint8
            assert (o.crop == 255).all(-1).mean() > 0.2 and (o.crop != 255).any()  # on white, not empty
            keys = [(round(o.x, 2), o.y) for o in found]
        assert keys == sorted(keys)  # reading order, not creation order
    finally:
        env.close()


def test_robot_and_background_ids_are_not_objects():
    segm = np.zeros((8, 8), np.uint8)
    segm[1, 1], segm[2, 2], segm[3, 3], segm[4, 4] = 1, 3, 7, 255
    assert object_ids(segm, robot_ids=[3]) == [7]


def test_grounding_benchmark_pairs_the_prompt_image_with_the_dragged_objects_crop():
    """benchmarks/grounding.py's "same" pair is the dragged object's own crop (the task knows which
    body that is), its "different" pair another object's."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "grounding.py"
    spec = importlib.util.spec_from_file_location("grounding", path)
    grounding = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grounding)
    rows = grounding.pairs("visual_manipulation", range(3, 6), np.random.default_rng(0))
    assert [same for *_, same in rows] == [True, False] * 3
    env = make_tabletop("visual_manipulation")
    try:
        for k, seed in enumerate(range(3, 6)):
            obs, info = env.reset(seed=seed)
            top = obs["rgb"]["top"].transpose(1, 2, 0)
            robot = info["meta_info"]["robot_components"]
            crops = {o.body_id: o.crop for o in scene_objects(top, obs["segm"]["top"], robot)}
            dragged = env.unwrapped.task.dragged
            np.testing.assert_array_equal(rows[2 * k][1], crops[dragged])
            assert not np.array_equal(rows[2 * k + 1][1], crops[dragged])
    finally:
        env.close()
