"""The benchmark's four evaluation levels (and the training split) as object/texture pools plus task lists;
a level is only a choice of ``Pools``, so tasks stay unaware of it. ``make_suite`` turns a level into env
makers and per-task episode seeds for evaluation."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.tabletop.shapes import BASE_L1, BASE_NOVEL, DRAGGED_L1, DRAGGED_NOVEL
from envs.tabletop.tasks import TASKS, Pools
from envs.tabletop.textures import BASE_TEXTURES_L1, DRAGGED_TEXTURES_L1

_L1_TASKS = (
    "visual_manipulation", "scene_understanding", "rotate", "rearrange", "rearrange_then_restore",
    "novel_adj", "novel_noun", "twist", "follow_order", "sweep_without_exceeding", "same_shape",
    "manipulate_old_neighbor", "pick_in_order_then_restore",
)  # fmt: skip
HELD_OUT_TASKS = ("novel_adj_and_noun", "follow_motion", "sweep_without_touching", "same_texture")
LEVEL_TASKS: dict[str, tuple[str, ...]] = {
    "train": _L1_TASKS,  # the benchmark's train partition: the same content as L1
    "L1": _L1_TASKS,  # placement generalization
    "L2": _L1_TASKS,  # combinatorial generalization
    "L3": tuple(t for t in _L1_TASKS if t != "sweep_without_exceeding"),  # novel objects
    "L4": HELD_OUT_TASKS,  # novel tasks
}
_L1_POOLS = Pools(DRAGGED_L1, BASE_L1, DRAGGED_TEXTURES_L1, BASE_TEXTURES_L1)
LEVEL_POOLS: dict[str, Pools] = {
    "train": _L1_POOLS,
    "L1": _L1_POOLS,
    "L2": Pools(DRAGGED_L1, BASE_L1, BASE_TEXTURES_L1, DRAGGED_TEXTURES_L1),  # texture sets swapped
    "L3": Pools(DRAGGED_NOVEL, BASE_NOVEL, DRAGGED_TEXTURES_L1, BASE_TEXTURES_L1),  # held-out shapes
    "L4": _L1_POOLS,
}
PARTITION_NAMES: dict[str, str] = {  # the benchmark's partition names
    "placement_generalization": "L1",
    "combinatorial_generalization": "L2",
    "novel_object_generalization": "L3",
    "novel_task_generalization": "L4",
}


def _level(level: str) -> str:
    level = PARTITION_NAMES.get(level, level)
    if level not in LEVEL_POOLS:
        raise ValueError(
            f"unknown level {level!r}; available: {sorted(LEVEL_POOLS)} or {sorted(PARTITION_NAMES)}"
        )
    return level


def level_pools(level: str) -> Pools:
    return LEVEL_POOLS[_level(level)]


def implemented_level_tasks(level: str) -> tuple[str, ...]:
    """The level's tasks that this suite implements (all of them since issue 5)."""
    return tuple(t for t in LEVEL_TASKS[_level(level)] if t in TASKS)


def make_level(level: str, **kwargs: Any) -> dict[str, Any]:
    """One env per task of ``level`` (kwargs as for ``TabletopEnv``)."""
    from envs.tabletop.env import TabletopEnv

    pools = level_pools(level)
    return {t: TabletopEnv(task=t, pools=pools, **kwargs) for t in implemented_level_tasks(level)}


@dataclass(frozen=True)
class Suite:
    """An evaluation suite: per task, a picklable env maker (usable with ``AsyncVectorEnv``) and the episode
    seeds to ``reset`` it with. Seeds depend only on (seed, level, task), so a suite is reproducible and
    adding tasks never shifts another task's episodes."""

    level: str
    makers: dict[str, Callable[[], Any]]
    seeds: dict[str, tuple[int, ...]]

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.makers)

    def episodes(self) -> Iterator[tuple[str, int]]:
        """(task, seed) pairs, task by task."""
        for task in self.makers:
            for s in self.seeds[task]:
                yield task, s


def episode_seeds(level: str, task: str, episodes: int, seed: int = 0) -> tuple[int, ...]:
    """``episodes`` distinct reset seeds for one task of a level."""
    key = [seed, *(ord(c) for c in f"{_level(level)}/{task}")]
    rng = np.random.default_rng(key)
    return tuple(int(s) for s in rng.choice(2**31 - 1, size=episodes, replace=False))


def make_suite(level: str, episodes: int = 100, seed: int = 0, **kwargs: Any) -> Suite:
    """The suite factory: env makers (kwargs as for ``TabletopEnv``: mode, render_mode, bonus_steps) and
    ``episodes`` reset seeds per task of ``level`` ("train", "L1".."L4" or a partition name)."""
    from envs.tabletop.env import TabletopEnv

    name = _level(level)
    pools = LEVEL_POOLS[name]
    tasks = implemented_level_tasks(name)
    makers = {t: functools.partial(TabletopEnv, task=t, pools=pools, **kwargs) for t in tasks}
    seeds = {t: episode_seeds(name, t, episodes, seed) for t in tasks}
    return Suite(name, makers, seeds)
