"""The VIMA-Bench adapter: its logic against a stand-in ``vima_bench`` package (always runs), and the real
benchmark when it is installed (skipped otherwise, with the reason).

The stand-in (tests/helpers/fake_vima_bench.py, our own code, importable as ``vima_bench`` only through a
shim the fixture writes to a temporary folder) is built from the kinds of values the real package
returns, compared with a real reset of every task of VIMA-Bench at commit
97e0af11e126fd477c9d81eeabfb6c739021c680 (vimalabs/VIMABench): ``SizeRange`` NamedTuples of nested tuples,
``ProfilePedia`` Enums, ``texture_color_value`` tuples or ``None``, callables and partials, prompt assets in
sorted key order with ``obj_info`` a dict or a list, and pybullet's process-global scene. A ``_plain`` that
rebuilds tuples with ``type(x)(generator)`` fails here as it fails on the real package.
"""

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.envs import resolve_env
from agent.metrics import summarize
from agent.rollout import evaluate
from envs.tabletop import make_tabletop
from envs.vima_bench import (
    MISSING_REASON,
    VimaBenchEnv,
    VimaProcessEnv,
    make_vima,
    register_vima_envs,
    vima_available,
)
from policies.registry import make_policy

HELPERS = Path(__file__).parent / "helpers"


@pytest.fixture
def standin(monkeypatch, tmp_path):
    """Our fake importable as ``vima_bench`` instead of any real one, through a one-line shim in tmp_path
    (sys.path is inherited by spawned worker processes, so they import the same fake)."""
    (tmp_path / "vima_bench.py").write_text(
        "import sys\nimport fake_vima_bench\nsys.modules[__name__] = fake_vima_bench\n"
    )
    monkeypatch.syspath_prepend(str(HELPERS))
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "vima_bench" or m.startswith("vima_bench.")]:
        monkeypatch.delitem(sys.modules, name)
    import vima_bench

    assert vima_bench.__file__ == str(HELPERS / "fake_vima_bench.py")
    vima_bench.MADE.clear()
    vima_bench.BAD_SEEDS.clear()
    yield vima_bench
    for name in [m for m in sys.modules if m == "vima_bench" or m.startswith("vima_bench.")]:
        del sys.modules[name]  # before monkeypatch restores any real one


def _only_plain(x, path="info"):
    """Fail on anything but the plain data our own suite's info holds."""
    if isinstance(x, dict):
        for k, v in x.items():
            _only_plain(v, f"{path}[{k!r}]")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            _only_plain(v, f"{path}[{i}]")
    else:
        assert x is None or type(x) in (str, int, float, bool, np.ndarray), f"{path}: {type(x)}"


def test_adapter_spaces_equal_ours(standin):
    env = make_vima("vima/rearrange", partition="L1")
    ours = make_tabletop("rearrange")
    try:
        assert env.observation_space == ours.observation_space
        assert env.action_space == ours.action_space
        task, kwargs = standin.MADE[0]
        assert task == "rearrange" and kwargs["task_kwargs"] == standin.PARTITION_TO_SPECS["test"][
            "placement_generalization"]["rearrange"]  # fmt: skip
        assert kwargs["modalities"] == ["rgb", "segm"] and kwargs["hide_arm_rgb"] is True
    finally:
        env.close()
        ours.close()


def test_real_data_structures_become_plain_info(standin):
    env = VimaBenchEnv("visual_manipulation")
    try:
        _, info = env.reset(seed=0)
        meta, assets = info["meta_info"], info["prompt_assets"]
        _only_plain(meta)
        _only_plain(assets)
        pickle.loads(pickle.dumps(info))  # no vima_bench class inside: workers and recorders need none
        block, letter = meta["obj_id_to_info"][5], meta["obj_id_to_info"][6]
        assert "obj_replace_fn" not in block and "obj_replace_fn" not in letter  # function and partial
        np.testing.assert_allclose(block["obj_size_range"]["low"], [0.136, 0.136, 0.034], rtol=1e-6)
        assert (block["obj_profile"], letter["obj_profile"]) == ("square", "undetermined")
        assert block["texture_color_value"].dtype == np.float32 and letter["texture_color_value"] is None
        assert block["obj_alias"] == ["cube"]
        assert list(assets) == ["dragged_obj_1", "base_obj"]  # prompt order, as ours (VIMA sorts them)
        assert (meta["task"], meta["max_steps"], meta["seed"]) == ("visual_manipulation", 5, 0)
        ours = make_tabletop("visual_manipulation")
        try:
            _, our_info = ours.reset(seed=0)
        finally:
            ours.close()
        assert list(our_info["prompt_assets"]) == list(assets)
        assert set(our_info["meta_info"]) - set(meta) <= {"task", "mode"} and "mode" in meta
    finally:
        env.close()


def test_adapter_seeds_retries_casts_and_truncates(standin):
    standin.BAD_SEEDS.update({7, 8})
    env = VimaBenchEnv("visual_manipulation")
    tmpdir = env._tmpdir
    try:
        obs, info = env.reset(seed=7)  # 7 and 8 fail: VIMA bumps the seed until reset works
        assert [c[1] for c in env._env.calls if c[0] == "reset"] == [7, 8, 9]
        assert env.seed_used == 9 and info["meta_info"]["seed"] == 9
        assert env.observation_space.contains(obs) and obs["rgb"]["top"].dtype == np.uint8
        assert os.listdir(tmpdir)  # the benchmark's temp files go to our private dir
        action = {
            "pose0_position": np.array([0.5, 0.0]),  # float64, like a careless policy
            "pose0_rotation": np.array([0.0, 0.0, 0.0, 1.0]),
            "pose1_position": np.array([0.9, 0.0]),  # out of bounds: clipped
            "pose1_rotation": np.array([0.0, 0.0, 0.0, 1.0]),
        }
        obs, reward, terminated, truncated, info = env.step(action)  # the real one rejects float64
        step_call = next(c for c in env._env.calls if c[0] == "step")
        assert set(step_call[1].values()) == {np.dtype(np.float32)} and step_call[2] is True  # skip_oracle
        assert (reward, terminated, truncated, info["success"]) == (1.0, True, False, True)
        env.reset(seed=1)
        env._env.task.update_goals = lambda skip_oracle=True: None  # the goal is never reached
        flags = [env.step(action)[2:4] for _ in range(5)]  # truncation at oracle_max_steps + 2
        assert flags[-1] == (False, True) and not any(t or u for t, u in flags[:-1])
        env.reset(seed=2)
        with pytest.raises(ValueError, match="shape"):
            env.step({**action, "pose0_position": np.zeros(3)})
    finally:
        env.close()
    assert not os.path.exists(tmpdir)


def test_oracle_steps_as_vima_own_scripts(standin):
    """VIMA's oracle scripts step with ``skip_oracle=False``: through the adapter the oracle must too, or it
    takes other steps (here: it would skip clearing the way and stop after one step)."""
    env = VimaBenchEnv("rearrange")
    try:
        obs, info = env.reset(seed=0)
        oracle = env.make_oracle()
        steps = 0
        while True:
            obs, _, terminated, truncated, info = env.step(oracle.act(obs, info))
            steps += 1
            if terminated or truncated:
                break
        assert (info["success"], steps) == (True, 2)
        assert [c[2] for c in env._env.calls if c[0] == "step"] == [False, False]
        env.reset(seed=0)  # an agent after the oracle episode: skip_oracle again
        env.step(oracle.act(obs, info))
        assert env._env.calls[-1][2] is True
    finally:
        env.close()


def test_a_second_env_in_one_process_is_refused(standin):
    """pybullet's state is per process: two VIMA envs in one process break each other's episodes."""
    first = VimaBenchEnv("visual_manipulation")
    try:
        with pytest.raises(RuntimeError, match="already open in this process"):
            VimaBenchEnv("visual_manipulation")
    finally:
        first.close()
    VimaBenchEnv("visual_manipulation").close()  # closed: a new one may open


def test_num_envs_2_equals_one_env_at_a_time(standin):
    """``--num-envs 2`` on vima/...: the second env runs in its own process, so the results equal those of one
    env; two envs in one process would fail every episode of the first (the stand-in shares its scene)."""
    oracle = make_policy("oracle")
    runs = [evaluate(resolve_env("vima/rearrange"), oracle, 3, 10, env_id="vima/rearrange", num_envs=k,
                     show_progress=False) for k in (1, 2)]  # fmt: skip
    keep = ("seed", "success", "steps", "failure_reason", "policy_none_actions")
    one, two = ([{k: e[k] for k in keep} for e in run] for run in runs)
    assert one == two and all(e["success"] and e["steps"] == 2 for e in one)


def test_process_env_split_step_equals_step(standin):
    """step_async + step_wait (what the rollout does so that K workers step at once) gives what step gives;
    a second request while one is in flight is refused instead of reading the wrong answer."""
    env = VimaProcessEnv("rearrange")
    try:
        obs, info = env.reset(seed=4)
        action = env.make_oracle().act(obs, info)
        whole = env.step(action)
        env.reset_async(seed=4)
        with pytest.raises(RuntimeError, match="reset is still in flight"):
            env.step(action)
        env.reset_wait()
        env.make_oracle()  # the oracle's episode mode, as for the whole step
        env.step_async(action)
        with pytest.raises(RuntimeError, match="no reset in flight"):
            env.reset_wait()
        split = env.step_wait()
        for view in ("front", "top"):
            assert np.array_equal(split[0]["rgb"][view], whole[0]["rgb"][view])
            assert np.array_equal(split[0]["segm"][view], whole[0]["segm"][view])
        assert split[1:4] == whole[1:4] and split[4].keys() == whole[4].keys()
        assert all(pickle.dumps(split[4][k]) == pickle.dumps(v) for k, v in whole[4].items())
    finally:
        env.close()


def test_process_env_reports_worker_errors(standin):
    with pytest.raises(ValueError, match="unknown VIMA-Bench task"):
        VimaProcessEnv("no_such_task")


def test_levels_come_from_the_benchmark_partitions(standin):
    entries = resolve_env("vima/L4")
    assert [e.task for e in entries] == ["follow_motion", "same_texture"]
    episodes = evaluate(entries, make_policy("oracle"), 2, 0, env_id="vima/L4", show_progress=False)
    summary = summarize(episodes)
    assert set(summary["per_task"]) == {"follow_motion", "same_texture"} and summary["success_rate"] == 1.0
    assert summary["per_level"]["L4"]["episodes"] == 4 and summary["per_level"]["L4"]["tasks"] == 2
    assert [e.task for e in resolve_env("vima/L3")] == ["rearrange"]
    with pytest.raises(ValueError, match="unknown VIMA-Bench task"):
        resolve_env("vima/L5")
    env = resolve_env("vima/rearrange", level="L3")[0].make()
    try:
        assert env.partition == "novel_object_generalization"
        assert standin.MADE[-1][1]["task_kwargs"] == {"possible_dragged_obj": ["letter R"]}
    finally:
        env.close()


def test_adapter_ids_register_without_vima_bench():
    ids = register_vima_envs()
    assert register_vima_envs() == ids and len(ids) == 17 and "uio2/vima-rotate-v0" in ids


def test_missing_vima_bench_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vima_bench", None)
    with pytest.raises(ImportError, match=r"docs/vima_bench\.md"):
        VimaBenchEnv("rotate")


@pytest.mark.skipif(not vima_available(), reason=MISSING_REASON)
def test_real_vima_bench_oracle_episode():
    env = VimaBenchEnv("visual_manipulation")
    ours = make_tabletop("visual_manipulation")
    try:
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs) and env.observation_space == ours.observation_space
        _only_plain(info["meta_info"])
        _only_plain(info["prompt_assets"])
        oracle = env.make_oracle()
        for _ in range(env.max_steps):
            obs, _, terminated, truncated, info = env.step(oracle.act(obs, info))
            if terminated or truncated:
                break
        assert info["success"]
    finally:
        env.close()
        ours.close()
