"""Adapter: the real VIMA-Bench (``vima_bench``, old gym API) behind the same Gymnasium spaces and info as our
tabletop suite, so one policy runs on both unchanged.

``vima_bench`` is imported lazily (it needs Python <= 3.12, old gym and torch; see docs/vima_bench.md). The
spaces come from ``envs.tabletop.spaces`` and are declared without it. What the adapter adds, following the
benchmark's own eval scripts: ``env.seed(s)`` before every reset, reset retries with the seed bumped by one
(up to 10, as VIMA's demo does), float32 casting and clipping of actions, ``skip_oracle=True`` for agents, a
step limit of ``oracle_max_steps + 2`` (truncation), ``reward = success``, and a private ``TMPDIR`` per env
(the benchmark leaves URDF files there on every reset) removed on ``close()``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from envs.tabletop.spaces import VIEWS, action_space, observation_space, sanitize_action

VIMA_TASKS: tuple[str, ...] = (
    "visual_manipulation", "scene_understanding", "rotate", "rearrange", "rearrange_then_restore",
    "novel_adj", "novel_noun", "novel_adj_and_noun", "twist", "follow_motion", "follow_order",
    "sweep_without_exceeding", "sweep_without_touching", "same_texture", "same_shape",
    "manipulate_old_neighbor", "pick_in_order_then_restore",
)  # fmt: skip
PARTITIONS: dict[str, str] = {
    "L1": "placement_generalization", "L2": "combinatorial_generalization",
    "L3": "novel_object_generalization", "L4": "novel_task_generalization",
}  # fmt: skip
RESET_TRIES = 10
MISSING_REASON = (
    "vima_bench is not installed (it is not on PyPI and needs Python <= 3.12); "
    "see docs/vima_bench.md to install it from its repository"
)


def vima_available() -> bool:
    """True when ``import vima_bench`` would work (without importing it: that costs seconds)."""
    return importlib.util.find_spec("vima_bench") is not None


def _import_vima():
    try:
        return importlib.import_module("vima_bench")
    except ImportError as err:
        raise ImportError(MISSING_REASON) from err


def _plain(x: Any) -> Any:
    """Drop callables (e.g. ``obj_replace_fn``) so meta info can be pickled and compared."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items() if not callable(v)}
    if isinstance(x, list | tuple):
        return type(x)(_plain(v) for v in x)
    return x


class VimaBenchEnv(gym.Env):
    """One VIMA-Bench task as a Gymnasium env with our suite's spaces, info keys and oracle interface."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(
        self,
        task: str = "visual_manipulation",
        partition: str | None = None,
        task_kwargs: dict[str, Any] | None = None,
        skip_oracle: bool = True,
        bonus_steps: int = 2,
        render_mode: str | None = "rgb_array",
        hide_arm_rgb: bool = True,
    ) -> None:
        task = task.removeprefix("vima/")
        if task not in VIMA_TASKS:
            raise ValueError(f"unknown VIMA-Bench task {task!r}; available: {list(VIMA_TASKS)}")
        self.task_name = task
        self.partition = PARTITIONS.get(partition, partition) if partition else None
        self.skip_oracle = skip_oracle
        self.bonus_steps = bonus_steps
        self.render_mode = render_mode
        self.observation_space, self.action_space = self.declared_spaces()
        self._tmpdir = tempfile.mkdtemp(prefix="uio2_vima_")
        self._old_tmp = (os.environ.get("TMPDIR"), tempfile.tempdir)
        os.environ["TMPDIR"] = self._tmpdir  # the benchmark writes URDF templates to gettempdir()
        tempfile.tempdir = self._tmpdir
        vb = _import_vima()
        if task_kwargs is None and self.partition is not None:
            task_kwargs = vb.PARTITION_TO_SPECS["test"][self.partition].get(task) or {}
        self._env = vb.make(
            task,
            task_kwargs=task_kwargs or {},
            modalities=["rgb", "segm"],
            seed=None,
            hide_arm_rgb=hide_arm_rgb,
        )
        self.max_steps = int(self._env.task.oracle_max_steps) + bonus_steps
        self.prompt = ""
        self.prompt_assets: dict[str, Any] = {}
        self.meta_info: dict[str, Any] = {}
        self.elapsed = 0
        self.seed_used: int | None = None
        self._raw_obs: Any = None
        self._obs: dict[str, Any] | None = None
        self._done = True

    @staticmethod
    def declared_spaces() -> tuple[gym.spaces.Dict, gym.spaces.Dict]:
        """(observation, action) spaces, available without vima_bench installed."""
        return observation_space(), action_space()

    @property
    def oracle_max_steps(self) -> int:
        return int(self._env.task.oracle_max_steps)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        base = int(self.np_random.integers(0, 2**31 - 1)) if seed is None else int(seed)
        last: Exception | None = None
        for k in range(RESET_TRIES):
            try:
                self._env.seed(base + k)
                raw = self._env.reset()
                break
            except Exception as err:  # VIMA's reset wrapper also retries on any error
                last = err
        else:
            raise RuntimeError(f"VIMA-Bench reset failed {RESET_TRIES} times from seed {base}") from last
        self.seed_used = base + k
        self.elapsed = 0
        self._done = False
        self._raw_obs = raw
        self._obs = self._convert_obs(raw)
        prompt, assets = self._env.get_prompt_and_assets()
        self.prompt, self.prompt_assets = str(prompt), assets
        self.meta_info = _plain(dict(self._env.meta_info))
        self.meta_info["seed"] = self.seed_used
        return self._obs, {
            "prompt": self.prompt,
            "prompt_assets": self.prompt_assets,
            "meta_info": self.meta_info,
        }

    def step(self, action: dict[str, Any]):
        if self._done:
            raise RuntimeError("episode has ended; call reset()")
        act = sanitize_action(action)
        raw, _reward, done, info = self._env.step(act, skip_oracle=self.skip_oracle)
        self.elapsed += 1
        success, failure = bool(info.get("success", False)), bool(info.get("failure", False))
        terminated = bool(done or success or failure)
        truncated = bool(self.elapsed >= self.max_steps and not terminated)
        self._done = terminated or truncated
        self._raw_obs = raw
        self._obs = self._convert_obs(raw)
        out = {"prompt": self.prompt, "success": success, "failure": failure}
        return self._obs, float(success), terminated, truncated, out

    def render(self) -> np.ndarray | None:
        if self.render_mode is None or self._obs is None:
            return None
        return np.ascontiguousarray(self._obs["rgb"]["front"].transpose(1, 2, 0))

    def make_oracle(self, seed: int | None = None) -> VimaOracle:
        """The benchmark's scripted oracle with our interface (``act(obs, info) -> action | None``)."""
        return VimaOracle(self)

    def close(self) -> None:
        env, self._env = getattr(self, "_env", None), None
        if env is not None:
            env.close()
        old_env, old_tempdir = self._old_tmp
        if old_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_env
        tempfile.tempdir = old_tempdir
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    @staticmethod
    def _convert_obs(raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "rgb": {v: np.asarray(raw["rgb"][v], dtype=np.uint8) for v in VIEWS},
            "segm": {v: np.asarray(raw["segm"][v], dtype=np.uint8) for v in VIEWS},
            "ee": int(np.asarray(raw["ee"]).item()),
        }


class VimaOracle:
    """Wraps ``env.task.oracle(env)``; returns float32, clipped actions, or None when it cannot act."""

    def __init__(self, env: VimaBenchEnv) -> None:
        self.env = env
        self._oracle = env._env.task.oracle(env._env)

    def act(self, obs: Any = None, info: Any = None) -> dict[str, np.ndarray] | None:
        action = self._oracle.act(self.env._raw_obs)
        if action is None:
            return None
        return sanitize_action(action)


def make_vima(task: str, **kwargs: Any) -> VimaBenchEnv:
    """Build the adapter for ``task`` (``vima/<task>`` accepted); kwargs go to ``VimaBenchEnv``."""
    return VimaBenchEnv(task=task, **kwargs)


def vima_env_id(task: str) -> str:
    return f"uio2/vima-{task}-v0"


def register_vima_envs() -> list[str]:
    """Register ``uio2/vima-<task>-v0`` for the 17 tasks (idempotent; vima_bench needed at make time)."""
    ids = []
    for task in VIMA_TASKS:
        eid = vima_env_id(task)
        if eid not in gym.registry:
            gym.register(id=eid, entry_point="envs.vima_bench:VimaBenchEnv", kwargs={"task": task})
        ids.append(eid)
    return ids
