"""Task rules: the oracle solves each family, doing nothing or the wrong thing does not, failures fire."""

import math

import numpy as np
import pytest

from envs.tabletop import TASK_NAMES, make_tabletop
from envs.tabletop.shapes import SHAPES, yaw_error
from envs.tabletop.tasks.base import make_action


def _run_oracle(env, seed: int) -> tuple[bool, int]:
    obs, info = env.reset(seed=seed)
    oracle = env.make_oracle(seed=seed)
    while True:
        action = oracle.act(obs, info)
        assert action is not None, "oracle gave up on a fresh task"
        assert env.action_space.contains(action)
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            assert reward == float(info["success"])
            return info["success"], env.elapsed


@pytest.fixture(params=TASK_NAMES)
def env(request):
    e = make_tabletop(request.param)
    yield e
    e.close()


def test_oracle_solves_within_budget(env):
    for seed in (0, 1):
        success, steps = _run_oracle(env, seed)
        assert success and steps <= env.oracle_max_steps


def test_wrong_or_missing_actions_do_not_succeed(env):
    """A push/pick in an empty corner changes nothing: never a success (no task starts solved)."""
    for seed in (3, 4):
        env.reset(seed=seed)
        corner = make_action([0.26, 0.49], 0.0, [0.27, 0.45], 0.0)
        _, reward, terminated, _, info = env.step(corner)
        assert not info["success"] and reward == 0.0 and not terminated


def test_distractor_into_base_is_failure():
    env = make_tabletop("visual_manipulation")
    try:
        env.reset(seed=5)
        task = env.task
        wrong = task.distractors[0]
        _, _, terminated, _, info = env.step(task.place_action(env.world, wrong, env.world.xy(task.base)))
        assert terminated and info["failure"] and not info["success"]
    finally:
        env.close()


def test_novel_noun_words_and_shapes():
    env = make_tabletop("novel_noun")
    try:
        _, info = env.reset(seed=7)
        objs = env.world.objects
        noun_d = objs[env.task.dragged].novel_name
        noun_b = objs[env.task.base].novel_name
        assert info["prompt"].endswith(f"Put a {noun_d} into a {noun_b}.") and noun_d != noun_b
        assert all(objs[b].shape.name != objs[env.task.dragged].shape.name for b in env.task.distractors)
        assert info["meta_info"]["obj_id_to_info"][env.task.dragged]["obj_novel_name"] == noun_d
    finally:
        env.close()


def test_rotate_needs_the_angle_and_keeps_position():
    env = make_tabletop("rotate")
    try:
        env.reset(seed=2)
        task, world = env.task, env.world
        angle = task.angle
        assert f"Rotate the {{dragged_obj}} {angle} degrees." == env.prompt
        sym = world.objects[task.target].shape.symmetry
        assert yaw_error(math.radians(angle), 0.0, sym) > math.radians(15)
        # moving without rotating: not a success
        _, _, terminated, _, info = env.step(task.place_action(world, task.target, task.start_xy, 0.0))
        assert not info["success"] and not terminated
        # rotating the wrong way round: still not a success (unless symmetric to the right angle)
        if yaw_error(-math.radians(angle), math.radians(angle), sym) > math.radians(20):
            wrong = task.place_action(world, task.target, task.start_xy, -math.radians(angle))
            _, _, _, _, info = env.step(wrong)
            assert not info["success"]
        _, _, terminated, _, info = env.step(env.make_oracle().act())
        assert info["success"] and terminated
    finally:
        env.close()


def test_rearrange_needs_every_object():
    env = make_tabletop("rearrange")
    try:
        env.reset(seed=3)
        task = env.task
        first = task.targets[0]
        _, _, terminated, _, info = env.step(task.place_action(env.world, first, task.goals[first]))
        assert not info["success"] and not terminated
        scene = env.prompt_assets["scene"]["segm"]["obj_info"]
        assert len(scene) == len(task.targets)  # distractors are not pictured
    finally:
        env.close()


def test_sweep_rules():
    env = make_tabletop("sweep_without_exceeding")
    try:
        obs, info = env.reset(seed=1)
        task = env.task
        assert obs["ee"] == 1 and info["meta_info"]["end_effector_type"] == "spatula"
        assert info["meta_info"]["robot_components"] == [2, 3]
        assert min(info["meta_info"]["obj_id_to_info"]) == 4  # spatula: objects from id 4
        assert {"swept_obj", "bounds", "constraint"} == set(info["prompt_assets"])
        # pushing a block far past the constraint line is a failure
        body, _slot = task.plan(env.world)[0]
        beyond = np.array([task.line_x() - 0.06, env.world.xy(body)[1]])
        _, _, terminated, _, info = env.step(make_action(env.world.xy(body), 0.0, beyond, 0.0))
        assert task.violated and terminated and info["failure"]
    finally:
        env.close()


def test_symmetry_pool():
    assert SHAPES["pentagon"].symmetry == pytest.approx(2 * math.pi / 5)
    assert SHAPES["hexagon"].symmetry == pytest.approx(math.pi / 3)
    assert SHAPES["ring"].symmetry == 0.0 and SHAPES["letter A"].symmetry == pytest.approx(2 * math.pi)
    assert yaw_error(math.radians(72 + 5), 0.0, SHAPES["pentagon"].symmetry) == pytest.approx(math.radians(5))
    assert yaw_error(1.234, 0.0, 0.0) == 0.0


def test_levels_pick_pools_and_the_suite_factory():
    from envs.tabletop import make_tabletop_suite
    from envs.tabletop.levels import LEVEL_POOLS, implemented_level_tasks

    assert "sweep_without_exceeding" not in implemented_level_tasks("L3")
    assert set(LEVEL_POOLS["L2"].dragged_textures) == set(LEVEL_POOLS["L1"].base_textures)
    for level in ("L2", "L3"):
        env = make_tabletop("visual_manipulation", level=level)
        try:
            env.reset(seed=0)
            dragged = env.world.objects[env.task.dragged]
            base = env.world.objects[env.task.base]
            assert dragged.texture in LEVEL_POOLS[level].dragged_textures
            assert dragged.shape.name in LEVEL_POOLS[level].dragged_shapes
            assert base.shape.name in LEVEL_POOLS[level].base_shapes
        finally:
            env.close()
    suite = make_tabletop_suite("L3")
    try:
        assert list(suite) == list(implemented_level_tasks("L3")) and len(suite) == 12
    finally:
        for e in suite.values():
            e.close()
