"""Level composition (the benchmark's partitions), L2's texture swap, L3's held-out shapes, suite factory."""

import pickle

import numpy as np
import pytest

from envs.tabletop import make_tabletop
from envs.tabletop.engine import World
from envs.tabletop.levels import (
    LEVEL_TASKS,
    PARTITION_NAMES,
    implemented_level_tasks,
    level_pools,
    make_suite,
)
from envs.tabletop.shapes import BASE_NOVEL, DRAGGED_NOVEL
from envs.tabletop.tasks import TASKS
from envs.tabletop.textures import BASE_TEXTURES_L1, DRAGGED_TEXTURES_L1

L1 = {  # reference notes, section 1.3: all 17 minus 08, 10, 13, 14
    "visual_manipulation", "scene_understanding", "rotate", "rearrange", "rearrange_then_restore",
    "novel_adj", "novel_noun", "twist", "follow_order", "sweep_without_exceeding", "same_shape",
    "manipulate_old_neighbor", "pick_in_order_then_restore",
}  # fmt: skip
L4 = {"novel_adj_and_noun", "follow_motion", "sweep_without_touching", "same_texture"}
L3_SHAPES = set(DRAGGED_NOVEL) | set(BASE_NOVEL)


def test_composition_matches_the_benchmark():
    assert len(TASKS) == 17 and set(TASKS) == L1 | L4 and not L1 & L4
    assert set(LEVEL_TASKS["L1"]) == L1 and len(LEVEL_TASKS["L1"]) == 13
    assert LEVEL_TASKS["L2"] == LEVEL_TASKS["L1"] and LEVEL_TASKS["train"] == LEVEL_TASKS["L1"]
    assert set(LEVEL_TASKS["L3"]) == L1 - {"sweep_without_exceeding"} and len(LEVEL_TASKS["L3"]) == 12
    assert set(LEVEL_TASKS["L4"]) == L4
    for level in ("train", "L1", "L2", "L3", "L4"):
        assert implemented_level_tasks(level) == LEVEL_TASKS[level]  # nothing skipped any more
    assert level_pools("train") == level_pools("L1")
    assert level_pools("L2").dragged_textures == BASE_TEXTURES_L1
    assert level_pools("L2").base_textures == DRAGGED_TEXTURES_L1
    assert set(level_pools("L3").dragged_shapes) == set(DRAGGED_NOVEL)
    assert set(level_pools("L3").base_shapes) == set(BASE_NOVEL)
    assert implemented_level_tasks("novel_task_generalization") == LEVEL_TASKS["L4"]
    assert set(PARTITION_NAMES.values()) == {"L1", "L2", "L3", "L4"}
    with pytest.raises(ValueError):
        level_pools("L5")


@pytest.mark.parametrize(
    "task", ["visual_manipulation", "manipulate_old_neighbor", "sweep_without_exceeding"]
)
def test_l2_swaps_textures_in_meta_info(task):
    """Movable (dragged) objects wear the L1 base set in L2, fixed (base) objects the L1 dragged set."""
    for level, dragged_set, base_set in (
        ("L1", DRAGGED_TEXTURES_L1, BASE_TEXTURES_L1),
        ("L2", BASE_TEXTURES_L1, DRAGGED_TEXTURES_L1),
    ):
        env = make_tabletop(task, level=level)
        try:
            _, info = env.reset(seed=3)
            infos = info["meta_info"]["obj_id_to_info"].values()
            assert any(o["obj_fixed"] for o in infos) and any(not o["obj_fixed"] for o in infos)
            for o in infos:
                assert o["texture_name"] in (base_set if o["obj_fixed"] else dragged_set), (level, o)
        finally:
            env.close()


def _generated_shapes(level: str, seeds: range) -> set[str]:
    """Shapes in the scenes and prompt placeholders of ``seeds`` episodes (generation only: fast)."""
    pools, tasks, world, seen = level_pools(level), LEVEL_TASKS[level], World(), set()
    try:
        for seed in seeds:
            rng = np.random.default_rng(seed)
            for _ in range(20):
                task = TASKS[tasks[seed % len(tasks)]](pools)
                world.reset()
                try:
                    task.generate(world, rng)
                    break
                except RuntimeError:
                    continue
            seen |= {o.shape.name for o in world.objects.values()}
            seen |= {so.shape for ph in task.placeholders.values() for so in ph.objects}
    finally:
        world.close()
    return seen


def test_l3_shapes_never_appear_in_l1_or_l2():
    for level in ("L1", "L2"):
        seen = _generated_shapes(level, range(200))
        assert not seen & L3_SHAPES, (level, seen & L3_SHAPES)
    assert _generated_shapes("L3", range(24)) & L3_SHAPES  # and they do appear in L3


def test_make_suite_makers_and_seeds():
    suite = make_suite("L4", episodes=3, seed=7, bonus_steps=1)
    assert set(suite.tasks) == L4 and suite.level == "L4"
    assert all(len(s) == 3 and len(set(s)) == 3 for s in suite.seeds.values())
    assert make_suite("L4", episodes=3, seed=7).seeds == suite.seeds  # reproducible
    assert make_suite("L4", episodes=3, seed=8).seeds != suite.seeds
    assert list(suite.episodes())[:3] == [(suite.tasks[0], s) for s in suite.seeds[suite.tasks[0]]]
    pickle.dumps(suite.makers["follow_motion"])  # usable by AsyncVectorEnv workers
    env = suite.makers["follow_motion"]()
    try:
        assert env.max_steps == env.oracle_max_steps + 1
        _, info = env.reset(seed=suite.seeds["follow_motion"][0])
        assert info["meta_info"]["task"] == "follow_motion"
    finally:
        env.close()
    l3 = make_suite("novel_object_generalization", episodes=1)
    assert l3.level == "L3" and len(l3.tasks) == 12 and "sweep_without_exceeding" not in l3.tasks
