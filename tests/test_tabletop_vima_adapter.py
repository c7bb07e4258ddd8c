"""The VIMA-Bench adapter: its logic against a stand-in ``vima_bench`` module (always runs), and the real
benchmark when it is installed (skipped otherwise, with the reason)."""

import os
import tempfile
import types

import numpy as np
import pytest

from envs.tabletop import make_tabletop
from envs.vima_bench import MISSING_REASON, VimaBenchEnv, make_vima, register_vima_envs, vima_available


class _FakeTask:
    oracle_max_steps = 3

    def oracle(self, env):
        return types.SimpleNamespace(act=lambda obs: {
            "pose0_position": np.array([0.5, 0.0]),  # float64, like a careless policy
            "pose0_rotation": np.array([0.0, 0.0, 0.0, 1.0]),
            "pose1_position": np.array([0.9, 0.0]),  # out of bounds: must be clipped
            "pose1_rotation": np.array([0.0, 0.0, 0.0, 1.0]),
        })  # fmt: skip


class _FakeVimaEnv:
    """Old-gym-style env recording what the adapter does to it."""

    def __init__(self, calls: list, bad_seeds: set[int], succeed_after: int) -> None:
        self.calls, self.bad_seeds, self.succeed_after = calls, bad_seeds, succeed_after
        self.task = _FakeTask()
        self.meta_info = {"obj_id_to_info": {5: {"obj_name": "bowl", "obj_replace_fn": print}}, "seed": None}
        self._seed = None
        self._n = 0

    def seed(self, s):
        self.calls.append(("seed", s))
        self._seed = s

    def _obs(self):
        rgb = np.full((3, 128, 256), self._seed % 256, dtype=np.int64)  # wrong dtype on purpose
        segm = rgb[0]
        return {"rgb": {"front": rgb, "top": rgb}, "segm": {"front": segm, "top": segm}, "ee": np.int64(0)}

    def reset(self):
        self.calls.append(("reset", self._seed))
        with open(os.path.join(tempfile.gettempdir(), f"tmp_{self._seed}.urdf"), "w") as f:
            f.write("<robot/>")
        if self._seed in self.bad_seeds:
            raise ValueError("cannot place objects")
        self._n = 0
        return self._obs()

    def get_prompt_and_assets(self):
        return "Put the {dragged_obj_1} into the {base_obj}.", {"dragged_obj_1": {}, "base_obj": {}}

    def step(self, action, skip_oracle=False):
        self.calls.append(("step", {k: v.dtype for k, v in action.items()}, skip_oracle, action))
        self._n += 1
        success = self._n >= self.succeed_after
        return self._obs(), 0.0, success, {"prompt": "p", "success": success, "failure": False}

    def close(self):
        self.calls.append(("close",))


@pytest.fixture
def fake_vima(monkeypatch):
    calls: list = []
    module = types.ModuleType("vima_bench")
    module.PARTITION_TO_SPECS = {"test": {"placement_generalization": {"rotate": None}}}
    opts = {"bad_seeds": {7, 8}, "succeed_after": 2}

    def make(task_name, **kwargs):
        calls.append(("make", task_name, kwargs))
        return _FakeVimaEnv(calls, opts["bad_seeds"], opts["succeed_after"])

    module.make = make
    monkeypatch.setitem(__import__("sys").modules, "vima_bench", module)
    return calls, opts


def test_adapter_spaces_equal_ours(fake_vima):
    env = make_vima("vima/rotate", partition="L1")
    ours = make_tabletop("rotate")
    try:
        assert env.observation_space == ours.observation_space
        assert env.action_space == ours.action_space
        calls, _ = fake_vima
        assert calls[0][0] == "make" and calls[0][2]["task_kwargs"] == {}  # L1 None -> defaults
        assert calls[0][2]["modalities"] == ["rgb", "segm"] and calls[0][2]["hide_arm_rgb"] is True
    finally:
        env.close()
        ours.close()


def test_adapter_seeds_retries_casts_and_truncates(fake_vima):
    calls, _ = fake_vima
    env = VimaBenchEnv("visual_manipulation")
    tmpdir = env._tmpdir
    try:
        obs, info = env.reset(seed=7)  # 7 and 8 fail: VIMA bumps the seed until reset works
        assert [c[1] for c in calls if c[0] == "seed"] == [7, 8, 9]
        assert env.seed_used == 9 and info["meta_info"]["seed"] == 9
        assert env.observation_space.contains(obs) and obs["rgb"]["top"].dtype == np.uint8
        assert "obj_replace_fn" not in info["meta_info"]["obj_id_to_info"][5]  # callables dropped
        assert set(info["prompt_assets"]) == {"dragged_obj_1", "base_obj"}
        assert os.listdir(tmpdir)  # the benchmark's temp files go to our private dir
        action = env.make_oracle().act(obs, info)
        assert all(v.dtype == np.float32 for v in action.values()) and action["pose1_position"][0] == 0.75
        as64 = {k: v.astype(np.float64) for k, v in action.items()}
        obs, reward, terminated, truncated, info = env.step(as64)
        step_call = next(c for c in calls if c[0] == "step")
        assert set(step_call[1].values()) == {np.dtype(np.float32)} and step_call[2] is True  # skip_oracle
        assert (reward, terminated, truncated) == (0.0, False, False)
        obs, reward, terminated, truncated, info = env.step(action)
        assert (reward, terminated, truncated, info["success"]) == (1.0, True, False, True)
        # never succeeding: truncation at oracle_max_steps + 2
        env._env.succeed_after = 99
        env.reset(seed=1)
        flags = [env.step(action)[2:4] for _ in range(5)]
        assert flags[-1] == (False, True) and not any(t or u for t, u in flags[:-1])
        env.reset(seed=2)
        with pytest.raises(ValueError, match="shape"):
            env.step({**action, "pose0_position": np.zeros(3)})
    finally:
        env.close()
    assert not os.path.exists(tmpdir) and ("close",) in calls


def test_adapter_gives_up_after_ten_failed_resets(fake_vima):
    _, opts = fake_vima
    opts["bad_seeds"] = set(range(100))
    env = VimaBenchEnv("rotate")
    try:
        with pytest.raises(RuntimeError, match=r"failed 10 times"):
            env.reset(seed=0)
    finally:
        env.close()


def test_adapter_ids_register_without_vima_bench():
    ids = register_vima_envs()
    assert register_vima_envs() == ids and len(ids) == 17 and "uio2/vima-rotate-v0" in ids


def test_missing_vima_bench_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "vima_bench", None)
    with pytest.raises(ImportError, match=r"docs/vima_bench\.md"):
        VimaBenchEnv("rotate")


@pytest.mark.skipif(not vima_available(), reason=MISSING_REASON)
def test_real_vima_bench_oracle_episode():
    env = VimaBenchEnv("visual_manipulation", skip_oracle=False)
    ours = make_tabletop("visual_manipulation")
    try:
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs) and env.observation_space == ours.observation_space
        oracle = env.make_oracle()
        for _ in range(env.max_steps):
            obs, _, terminated, truncated, info = env.step(oracle.act(obs, info))
            if terminated or truncated:
                break
        assert info["success"]
    finally:
        env.close()
        ours.close()
