"""``TabletopEnv``: the Gymnasium env tying world, task, cameras and execution mode together."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from envs.tabletop.assets import AssetRenderer
from envs.tabletop.cameras import render
from envs.tabletop.engine import World
from envs.tabletop.oracle import TabletopOracle
from envs.tabletop.primitives import KinematicExecutor
from envs.tabletop.spaces import ACTION_BOUNDS, VIEWS, action_space, observation_space, sanitize_action
from envs.tabletop.tasks import TASKS, Pools, Task

MODES = ("kinematic", "arm")
MAX_GENERATION_TRIES = 20


class TabletopEnv(gym.Env):
    """One VIMA-Bench-style task in pybullet (headless DIRECT client per env).

    ``reset`` returns ``(obs, info)`` with ``info`` = ``prompt``, ``prompt_assets``, ``meta_info`` (also kept
    as attributes); ``step`` returns the 5-tuple with ``info`` = ``prompt``, ``success``, ``failure``;
    reward is 1.0 on success. The episode ends on success or failure (terminated) or after
    ``oracle_max_steps + 2`` steps (truncated). All randomness comes from ``reset(seed=...)``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(
        self,
        task: str = "visual_manipulation",
        mode: str = "kinematic",
        pools: Pools | None = None,
        render_mode: str | None = "rgb_array",
        bonus_steps: int = 2,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; available: {sorted(TASKS)}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.task_name = task
        self.mode = mode
        self.pools = pools or Pools()
        self.render_mode = render_mode
        self.observation_space = observation_space()
        self.action_space = action_space()
        self.task: Task | None = None
        self.task_cls = TASKS[task]
        self.max_steps = self.task_cls.oracle_max_steps + bonus_steps
        self.world = World()
        self.assets = AssetRenderer()
        self.executor = self._make_executor()
        self.prompt = ""
        self.prompt_assets: dict[str, Any] = {}
        self.meta_info: dict[str, Any] = {}
        self.elapsed = 0
        self._obs: dict[str, Any] | None = None
        self._done = True

    def _make_executor(self):
        if self.mode == "arm":
            from envs.tabletop.arm import ArmExecutor

            return ArmExecutor()
        return KinematicExecutor()

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        last_err: Exception | None = None
        for _ in range(MAX_GENERATION_TRIES):
            task = self.task_cls(self.pools)
            self.world.reset()
            self.executor = self._make_executor()
            self.executor.setup(self.world, task.ee)
            try:
                task.generate(self.world, rng)
                break
            except RuntimeError as err:  # crowded scene: resample from the same stream (deterministic)
                last_err = err
        else:
            raise RuntimeError(f"could not generate a {self.task_name} scene: {last_err}")
        self.task = task
        self.world.settle()
        self.elapsed = 0
        self._done = False
        self.prompt = task.prompt
        self.prompt_assets = {k: self.assets.render(ph) for k, ph in task.placeholders.items()}
        self.meta_info = {
            "end_effector_type": task.ee,
            "n_objects": len(self.world.objects),
            "difficulty": "easy",
            "views": list(VIEWS),
            "modalities": ["rgb", "segm"],
            "seed": seed,
            "action_bounds": {k: v.copy() for k, v in ACTION_BOUNDS.items()},
            "robot_components": list(self.world.robot_ids),
            "obj_id_to_info": {b: o.to_meta() for b, o in self.world.objects.items()},
            "task": self.task_name,
            "mode": self.mode,
            "oracle_max_steps": task.oracle_max_steps,
            "max_steps": self.max_steps,
        }
        self._obs = self._observe()
        return self._obs, {
            "prompt": self.prompt,
            "prompt_assets": self.prompt_assets,
            "meta_info": self.meta_info,
        }

    def step(self, action: dict[str, Any]):
        if self.task is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("episode has ended; call reset()")
        act = sanitize_action(action)
        if self.task.ee == "suction":
            self.executor.pick_place(self.world, act)
        else:
            self.executor.push(self.world, act)
        self.world.settle()
        self.task.after_step(self.world)
        success, failure = self.task.check(self.world)
        self.elapsed += 1
        terminated = bool(success or failure)
        truncated = bool(self.elapsed >= self.max_steps and not terminated)
        self._done = terminated or truncated
        self._obs = self._observe()
        info = {"prompt": self.prompt, "success": bool(success), "failure": bool(failure)}
        return self._obs, float(success), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """Front view HWC uint8 (the benchmark's env.render() is a no-op; ours gives a frame for videos)."""
        if self.render_mode is None:
            return None
        obs = self._obs if self._obs is not None else self._observe()
        return np.ascontiguousarray(obs["rgb"]["front"].transpose(1, 2, 0))

    def close(self) -> None:
        self.world.close()
        self.assets.close()

    # ------------------------------------------------------------------ extras
    def make_oracle(self, seed: int | None = None) -> TabletopOracle:
        """The scripted expert for the current task: ``oracle.act(obs, info) -> action | None``."""
        return TabletopOracle(self, seed)

    @property
    def oracle_max_steps(self) -> int:
        return self.task_cls.oracle_max_steps

    def _observe(self) -> dict[str, Any]:
        rgb, segm = render(self.world.client)
        return {"rgb": rgb, "segm": segm, "ee": 0 if self.task_cls.ee == "suction" else 1}
