"""The 11 families added in issue 5: Gymnasium behaviour, oracle success, random failure, and one scripted
wrong action per memory / order / constraint rule that must fail (or never succeed)."""

import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.tabletop import env_id, make_tabletop, register_envs
from envs.tabletop.tasks import NEW_FAMILIES, TASKS
from envs.tabletop.tasks.base import make_action

STEP_LIMITS = {  # the benchmark's oracle_max_steps (reference notes, section 1.3)
    "rearrange_then_restore": 8,
    "novel_adj": 3,
    "novel_adj_and_noun": 3,
    "twist": 5,
    "follow_motion": 4,
    "follow_order": 4,
    "sweep_without_touching": 14,
    "same_texture": 4,
    "same_shape": 4,
    "manipulate_old_neighbor": 4,
    "pick_in_order_then_restore": 4,
}


@pytest.fixture
def make():
    envs = []

    def _make(task: str, **kw):
        envs.append(make_tabletop(task, **kw))
        return envs[-1]

    yield _make
    for e in envs:
        e.close()


def _step(env, action):
    _, reward, terminated, truncated, info = env.step(action)
    return reward, terminated, truncated, info


def _oracle_episode(env, seed: int) -> tuple[bool, int]:
    obs, info = env.reset(seed=seed)
    oracle = env.make_oracle(seed=seed)
    while True:
        action = oracle.act(obs, info)
        assert action is not None, f"oracle gave up (seed {seed}, step {env.elapsed})"
        assert env.action_space.contains(action)
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            assert reward == float(info["success"])
            return bool(info["success"]), env.elapsed


def test_registry_and_step_limits():
    assert set(NEW_FAMILIES) <= set(TASKS) and len(TASKS) == 17
    for name, limit in STEP_LIMITS.items():
        assert TASKS[name].oracle_max_steps == limit
    assert TASKS["sweep_without_touching"].ee == "spatula"


@pytest.mark.parametrize("task", ["follow_order", "sweep_without_touching"])  # one per end effector
def test_gymnasium_check_env(task):
    register_envs()
    env = gym.make(env_id(task)).unwrapped
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env, skip_render_check=False)
        allowed = ("symmetric and normalized", "alternative render modes")
        assert [str(w.message) for w in caught if not any(a in str(w.message) for a in allowed)] == []
    finally:
        env.close()


@pytest.mark.parametrize("task", NEW_FAMILIES)
def test_reset_step_and_prompt_assets(task, make):
    """What check_env checks, cheaper (it renders every prompt asset on each of its resets)."""
    env = make(task)
    obs, info = env.reset(seed=11)
    first_top = obs["rgb"]["top"].copy()
    assert env.observation_space.contains(obs) and set(info) == {"prompt", "prompt_assets", "meta_info"}
    names = set(re.findall(r"\{(\w+)\}", info["prompt"]))
    assert names == set(info["prompt_assets"]) and names
    for asset in info["prompt_assets"].values():
        assert asset["rgb"]["top"].shape == (3, 128, 256) and asset["placeholder_type"] in ("object", "scene")
    meta = info["meta_info"]
    assert meta["oracle_max_steps"] == STEP_LIMITS[task] and meta["max_steps"] == STEP_LIMITS[task] + 2
    assert meta["end_effector_type"] == TASKS[task].ee and obs["ee"] == int(TASKS[task].ee == "spatula")
    env.action_space.seed(0)
    obs, reward, terminated, truncated, step_info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and isinstance(reward, float)
    assert isinstance(terminated, bool) and isinstance(truncated, bool)
    assert set(step_info) == {"prompt", "success", "failure"} and step_info["prompt"] == info["prompt"]
    obs2, info2 = env.reset(seed=11)  # deterministic per seed
    assert info2["prompt"] == info["prompt"] and np.array_equal(obs2["rgb"]["top"], first_top)


@pytest.mark.parametrize("task", NEW_FAMILIES)
def test_oracle_solves_five_seeds(task, make):
    env = make(task)
    for seed in range(100, 105):
        success, steps = _oracle_episode(env, seed)
        assert success and steps <= STEP_LIMITS[task], (seed, steps)


@pytest.mark.parametrize("task", NEW_FAMILIES)
def test_random_actions_fail(task, make):
    env = make(task)
    for seed in (0,):
        env.reset(seed=seed)
        env.action_space.seed(seed)
        while True:
            reward, terminated, truncated, info = _step(env, env.action_space.sample())
            assert not info["success"] and reward == 0.0
            if terminated or truncated:
                break


# ---------------------------------------------------------------------------------------- memory rules
def test_rearrange_then_restore_needs_both_phases(make):
    env = make("rearrange_then_restore")
    env.reset(seed=3)
    task, world, oracle = env.task, env.world, env.make_oracle()
    # the start arrangement is not "restored" before the goal scene was reached
    _, terminated, _, info = _step(env, make_action([0.26, 0.49], 0.0, [0.27, 0.45], 0.0))
    assert not info["success"] and not terminated
    while not task.reached_goal:  # reach the pictured scene: not a success yet
        _, terminated, _, info = _step(env, oracle.act())
        assert not info["success"] and not terminated
    # a partial restore (only the first object back) does not succeed
    first = task.targets[0]
    _, terminated, _, info = _step(env, task.place_action(world, first, task.origins[first]))
    assert not info["success"] and not terminated
    while not terminated:  # the oracle remembers where everything started
        _, terminated, truncated, info = _step(env, oracle.act())
        terminated = terminated or truncated
    assert info["success"]


def test_rearrange_then_restore_without_restore_times_out(make):
    env = make("rearrange_then_restore")
    env.reset(seed=4)
    task, oracle = env.task, env.make_oracle()
    while not task.reached_goal:
        _step(env, oracle.act())
    truncated, info = False, {}
    while not truncated:  # stand still in the goal scene until the budget runs out
        _, terminated, truncated, info = _step(env, make_action([0.26, 0.49], 0.0, [0.27, 0.45], 0.0))
        assert not terminated
    assert not info["success"]


def test_manipulate_old_neighbor_order(make):
    env = make("manipulate_old_neighbor")
    env.reset(seed=2)
    task, world = env.task, env.world
    assert f"previously at its {task.direction}" in env.prompt
    # the neighbour first: wrong order, immediate failure
    _, terminated, _, info = _step(env, task.place_action(world, task.neighbour, world.xy(task.base)))
    assert terminated and info["failure"]
    env.reset(seed=2)
    task, world = env.task, env.world
    _, terminated, _, info = _step(env, env.make_oracle().act())
    assert not terminated
    # a distractor instead of the old neighbour: failure
    _, terminated, _, info = _step(env, task.place_action(world, task.others[0], world.xy(task.base)))
    assert terminated and info["failure"]


def test_manipulate_old_neighbor_geometry(make):
    from envs.tabletop.tasks.manipulate_old_neighbor import DIRECTIONS

    env = make("manipulate_old_neighbor")
    for seed in range(5):
        env.reset(seed=seed)
        task, world = env.task, env.world
        u = DIRECTIONS[task.direction]
        d = world.xy(task.neighbour) - world.xy(task.dragged)
        assert np.dot(d, u) > 0.9 * np.linalg.norm(d)  # the neighbour lies in the named direction


def test_pick_in_order_then_restore_order(make):
    env = make("pick_in_order_then_restore")
    env.reset(seed=5)
    task, world = env.task, env.world
    assert task.near(world, task.target, world.xy(task.bases[2]))  # starts in its container
    assert "original container" in env.prompt and "base_obj_2" in env.prompt_assets
    # base 2 before base 1: failure at once
    _, terminated, _, info = _step(env, task.place_action(world, task.target, world.xy(task.bases[1])))
    assert terminated and info["failure"]
    # base 1, then straight back to the container (skipping base 2): failure
    env.reset(seed=5)
    task, world = env.task, env.world
    _, terminated, _, info = _step(env, task.place_action(world, task.target, world.xy(task.bases[0])))
    assert not terminated
    _, terminated, _, info = _step(env, task.place_action(world, task.target, world.xy(task.bases[2])))
    assert terminated and info["failure"]


# ---------------------------------------------------------------------------------------- order rules
def test_follow_motion_order(make):
    env = make("follow_motion")
    env.reset(seed=6)
    task, world = env.task, env.world
    assert len(task.waypoints) >= 2 and f"{{frame_{len(task.waypoints)}}}" in env.prompt
    # jumping to the second frame first: failure at once
    _, terminated, _, info = _step(env, task.place_action(world, task.target, task.waypoints[1]))
    assert terminated and info["failure"]
    # moving another object: failure at once; a no-op is not judged
    env.reset(seed=6)
    task, world = env.task, env.world
    _, terminated, _, info = _step(env, make_action([0.26, 0.49], 0.0, [0.27, 0.45], 0.0))
    assert not terminated
    _, terminated, _, info = _step(env, task.place_action(world, task.others[0], [0.3, 0.0]))
    assert terminated and info["failure"]


def test_follow_order_order(make):
    env = make("follow_order")
    env.reset(seed=7)
    task, world = env.task, env.world
    (b0, xy0), (b1, xy1) = task.sequence[:2]
    _, terminated, _, info = _step(env, task.place_action(world, b1, xy1))
    assert terminated and info["failure"]
    env.reset(seed=7)
    task, world = env.task, env.world
    (b0, xy0), (b1, xy1) = task.sequence[:2]
    _, terminated, _, info = _step(env, task.place_action(world, b0, xy0))
    assert not terminated and task.next == 1
    # the right object but not to its pictured place: no progress, failure at once
    nudge = world.xy(b1) + np.array([0.05 if world.xy(b1)[0] < 0.5 else -0.05, 0.0])
    _, terminated, _, info = _step(env, task.place_action(world, b1, nudge))
    assert terminated and info["failure"] and task.next == 1
    scene = env.prompt_assets["frame_0"]["segm"]["obj_info"]
    assert len(scene) == len(task.bodies)


# ---------------------------------------------------------------------------------------- constraints
def test_sweep_without_touching_line(make):
    env = make("sweep_without_touching")
    obs, info = env.reset(seed=8)
    task, world = env.task, env.world
    assert obs["ee"] == 1 and info["meta_info"]["end_effector_type"] == "spatula"
    assert {"swept_obj", "bounds", "constraint"} == set(info["prompt_assets"])
    # pushing a block that starts behind the line straight in: it crosses the line, failure
    b = task.swept[0]
    x, y = world.xy(b)
    _, terminated, _, info = _step(env, make_action([x, y], 0.0, [task.zone[0] - 0.02, y], 0.0))
    assert task.touched and terminated and info["failure"] and not info["success"]


def test_sweep_without_touching_needs_all_blocks(make):
    env = make("sweep_without_touching")
    for seed in range(30):
        env.reset(seed=seed)
        if env.task.n_required == 2:
            break
    assert "Sweep two " in env.prompt or "Sweep all " in env.prompt
    task, oracle = env.task, env.make_oracle()
    while not task.inside(env.world, task.swept[0]):
        _, terminated, _, info = _step(env, oracle.act())
        assert not info["success"] and not terminated


# ---------------------------------------------------------------------------------------- concepts
def test_novel_adj_foil_and_demos(make):
    for task_name in ("novel_adj", "novel_adj_and_noun"):
        env = make(task_name)
        _, info = env.reset(seed=9)
        task, world = env.task, env.world
        objs = world.objects
        assert objs[task.foil].shape.name == objs[task.dragged].shape.name
        assert objs[task.foil].texture == objs[task.dragged].texture
        assert (objs[task.dragged].scale > objs[task.foil].scale) == task.means_larger
        for i in (1, 2, 3):
            more = env.task.placeholders[f"demo_blicker_obj_{i}"].objects[0].scale
            less = env.task.placeholders[f"demo_less_blicker_obj_{i}"].objects[0].scale
            assert (more > less) == task.means_larger
        assert f"Put the {task.adjective} " in info["prompt"]
        _, terminated, _, info = _step(env, task.place_action(world, task.foil, world.xy(task.base)))
        assert terminated and info["failure"]


def test_twist_angle_only_in_demos(make):
    env = make("twist")
    _, info = env.reset(seed=10)
    task, world = env.task, env.world
    assert str(task.angle) not in info["prompt"] and task.texture in info["prompt"]
    assert {f"before_twist_{i}" for i in (1, 2, 3)} <= set(info["prompt_assets"])
    body = task.targets[0]
    _, terminated, _, info = _step(env, task.place_action(world, body, task.start[body][0], 0.0))
    assert not info["success"] and not terminated  # moved back in place without turning


@pytest.mark.parametrize("task_name", ["same_texture", "same_shape"])
def test_same_attribute_rules(task_name, make):
    env = make(task_name)
    env.reset(seed=12)
    task, world = env.task, env.world
    base = world.objects[task.base]
    attr = (lambda o: o.texture) if task_name == "same_texture" else (lambda o: o.shape.profile)
    assert all(attr(world.objects[b]) == attr(base) for b in task.targets)
    assert all(attr(world.objects[b]) != attr(base) for b in task.distractors)
    _, terminated, _, info = _step(env, task.place_action(world, task.distractors[0], world.xy(task.base)))
    assert terminated and info["failure"]
