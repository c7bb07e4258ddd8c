"""Our own fake of the real ``vima_bench`` package (not on PyPI, so CI cannot install it; none of its code is
here), imported as ``vima_bench`` by tests/test_tabletop_vima_adapter.py through a test-time shim.

It returns the same kinds of values as VIMA-Bench at commit 97e0af11e126fd477c9d81eeabfb6c739021c680
(vimalabs/VIMABench), compared field by field with a real reset of every task: ``meta_info`` entries carry a
``SizeRange`` NamedTuple of nested tuples, a ``ProfilePedia`` Enum, ``texture_color_value`` as a tuple or
``None`` (image textures), callables (functions and ``functools.partial``), ``None`` or list aliases;
``get_prompt_and_assets`` returns assets in sorted key order (not prompt order), ``obj_info`` a dict or, for
scenes, a list of dicts. Like pybullet's default client, the simulated scene is process-global state: a second
env in the same process silently changes what the first one sees. The oracle's goals marked oracle-only are
updated only when stepping with ``skip_oracle=False``, as in the real ``update_goals``.
"""

from __future__ import annotations

import functools
import os
import tempfile
from enum import Enum
from typing import Any, NamedTuple

import numpy as np


class SizeRange(NamedTuple):
    low: tuple[float, float, float]
    high: tuple[float, float, float]


class ProfilePedia(Enum):
    UNDETERMINED = -1
    SQUARE_LIKE = 0
    CIRCLE_LIKE = 1


_TEXTURES = {"red": (0.85, 0.2, 0.2), "purple": (0.69, 0.48, 0.63)}
_TASK_SPECS = {"possible_dragged_obj": ["letter M", "block"], "possible_dragged_obj_texture": ["red"]}
PARTITION_TO_SPECS: dict[str, dict[str, dict[str, Any]]] = {
    "train": {"visual_manipulation": _TASK_SPECS, "rearrange": _TASK_SPECS},
    "test": {
        "placement_generalization": {"visual_manipulation": _TASK_SPECS, "rearrange": _TASK_SPECS},
        "combinatorial_generalization": {"visual_manipulation": _TASK_SPECS},
        "novel_object_generalization": {"rearrange": {"possible_dragged_obj": ["letter R"]}},
        "novel_task_generalization": {"follow_motion": None, "same_texture": None},
    },
}
ALL_TASKS = [
    "instruction_following/visual_manipulation", "rearrangement/rearrange",
    "one_shot_imitation/follow_motion", "require_reasoning/same_texture",
]  # fmt: skip

_CLIENT: dict[str, Any] = {"owner": None, "poses": {}}  # pybullet's default client: one per process
BAD_SEEDS: set[int] = set()  # seeds whose reset fails to place objects (the real one raises then)


def _replace_fn(*args: Any, fname: str = "") -> None: ...


def _obj_info(name: str, texture: str, image: bool) -> dict[str, Any]:
    size = (0.136, 0.136, 0.034)
    return {
        "obj_name": name, "obj_assets": "kitting/object-template.urdf",
        "obj_size_range": SizeRange(low=size, high=size), "obj_from_template": True,
        "obj_replace_fn": functools.partial(_replace_fn, fname="m.obj") if image else _replace_fn,
        "obj_pose_transform_fn": None, "obj_alias": None if image else ["cube"], "obj_novel_name": None,
        "obj_template_file": None, "obj_symmetry": None if image else 1.5707963267948966,
        "obj_profile": ProfilePedia.UNDETERMINED if image else ProfilePedia.SQUARE_LIKE,
        "texture_name": "yellow and blue stripe" if image else texture,
        "texture_color_value": None if image else _TEXTURES[texture],
        "texture_texture_asset": "/site/vima_bench/tasks/assets/textures/stripes/yellow_blue_stripe.jpg"
        if image else None,
        "texture_alias": None, "texture_novel_name": None,
    }  # fmt: skip


class _Task:
    def __init__(self, name: str) -> None:
        self.name = name
        self.oracle_max_steps = 3
        self.goals: list[tuple[int, bool]] = []  # (object id, oracle_only)

    def oracle(self, env: _Env) -> Any:
        def act(obs: Any) -> dict[str, np.ndarray] | None:
            oid = self.goals[0][0]  # as the real oracle: IndexError once every goal is done
            return {
                "pose0_position": np.array([0.4 + 0.01 * oid, 0.1], np.float32),
                "pose0_rotation": np.array([0.0, 0.0, 0.0, 1.0], np.float32),
                "pose1_position": np.array([0.6, -0.1], np.float32),
                "pose1_rotation": np.array([0.0, 0.0, 0.0, 1.0], np.float32),
            }

        return type("OracleAgent", (), {"act": staticmethod(act)})()

    def update_goals(self, skip_oracle: bool = True) -> None:
        for k, (_, oracle_only) in enumerate(self.goals):
            if skip_oracle and oracle_only:
                continue
            del self.goals[k]
            return


class _Env:
    """Old-gym-style env: ``seed``, ``reset() -> obs``, ``step(action, skip_oracle) -> 4-tuple``."""

    def __init__(self, task_name: str, task_kwargs: dict[str, Any] | None) -> None:
        self.task = _Task(task_name)
        self.task_kwargs = task_kwargs
        self._seed: int | None = None
        self.meta_info: dict[str, Any] = {}
        self.calls: list[tuple[Any, ...]] = []

    def seed(self, seed: int | None = None) -> list[int | None]:
        self._seed = seed
        return [seed]

    def _obs(self) -> dict[str, Any]:
        level = (len(_CLIENT["poses"]) * 40 + (self._seed or 0)) % 256
        rgb = np.full((3, 128, 256), level, np.uint8)
        return {"rgb": {"front": rgb, "top": rgb.copy()}, "segm": {"front": rgb[0], "top": rgb[1]}, "ee": 0}

    def reset(self) -> dict[str, Any]:
        self.calls.append(("reset", self._seed))
        with open(os.path.join(tempfile.gettempdir(), f"tmp_{self._seed}.urdf"), "w") as f:
            f.write("<robot/>")
        if self._seed in BAD_SEEDS:
            raise ValueError("cannot place objects")
        _CLIENT["owner"], _CLIENT["poses"] = self, {5: "start", 6: "start"}
        rearrange = self.task.name == "rearrange"
        self.task.goals = [(6, True), (5, False)] if rearrange else [(5, False)]  # clear the way first
        self.meta_info = {
            "end_effector_type": "suction", "n_objects": 2, "difficulty": "easy", "views": ["front", "top"],
            "modalities": ["rgb", "segm"], "seed": self._seed,
            "action_bounds": {"low": np.array([0.25, -0.5], np.float32),
                              "high": np.array([0.75, 0.5], np.float32)},
            "robot_components": [2, 3, 4],
            "obj_id_to_info": {5: _obj_info("block", "red", False), 6: _obj_info("letter M", "", True)},
        }  # fmt: skip
        return self._obs()

    def get_prompt_and_assets(self) -> tuple[str, dict[str, Any]]:
        def asset(obj_info: Any, kind: str) -> dict[str, Any]:
            rgb = np.zeros((3, 128, 256), np.uint8)
            segm = {"front": rgb[0], "top": rgb[1], "obj_info": obj_info}
            return {"rgb": {"front": rgb, "top": rgb}, "segm": segm, "placeholder_type": kind}

        info = {"obj_id": 0, "obj_name": "block", "obj_color": "red"}
        if self.task.name == "rearrange":
            return "Rearrange to this {scene}.", {"scene": asset([info, {**info, "obj_id": 1}], "scene")}
        prompt = "Put the {dragged_obj_1} into the {base_obj}."
        return prompt, {"base_obj": asset(info, "object"), "dragged_obj_1": asset(info, "object")}  # sorted

    def step(self, action: dict[str, Any] | None = None, skip_oracle: bool = True):
        self.calls.append(("step", {k: np.asarray(v).dtype for k, v in action.items()}, skip_oracle))
        for value in action.values():
            if np.asarray(value).dtype != np.float32:
                raise AssertionError(f"got {action} instead, action space ...")  # gym's contains() fails
        if _CLIENT["owner"] is not self:  # another env reset the shared client: this scene is gone
            return self._obs(), 0, True, {"prompt": "", "success": False, "failure": True}
        _CLIENT["poses"][5] = "moved"
        self.task.update_goals(skip_oracle=skip_oracle)
        success = not [g for g in self.task.goals if not g[1]]
        return self._obs(), 0, False, {"prompt": "", "success": success, "failure": False}

    def close(self) -> None:
        self.calls.append(("close",))
        if _CLIENT["owner"] is self:
            _CLIENT["owner"] = None


def make(
    task_name: str,
    task_kwargs: dict[str, Any] | None = None,
    modalities: Any = None,
    seed: int | None = None,
    hide_arm_rgb: bool = True,
    **kwargs: Any,
) -> _Env:
    if task_name not in {t.split("/")[1] for t in ALL_TASKS}:
        raise AssertionError(f"{task_name} not in ALL_TASKS")
    env = _Env(task_name, task_kwargs)
    MADE.append((task_name, {"task_kwargs": task_kwargs, "modalities": modalities, "seed": seed,
                             "hide_arm_rgb": hide_arm_rgb, **kwargs}))  # fmt: skip
    return env


MADE: list[tuple[str, dict[str, Any]]] = []
