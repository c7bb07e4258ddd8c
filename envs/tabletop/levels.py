"""The benchmark's four evaluation levels as object/texture pools plus task lists; a level is only a choice of
``Pools``, so tasks stay unaware of it. Families not implemented yet are listed but skipped by the factory."""

from __future__ import annotations

from typing import Any

from envs.tabletop.shapes import BASE_L1, BASE_NOVEL, DRAGGED_L1, DRAGGED_NOVEL
from envs.tabletop.tasks import TASKS, Pools
from envs.tabletop.textures import BASE_TEXTURES_L1, DRAGGED_TEXTURES_L1

_L1_TASKS = (
    "visual_manipulation", "scene_understanding", "rotate", "rearrange", "rearrange_then_restore",
    "novel_adj", "novel_noun", "twist", "follow_order", "sweep_without_exceeding", "same_shape",
    "manipulate_old_neighbor", "pick_in_order_then_restore",
)  # fmt: skip
LEVEL_TASKS: dict[str, tuple[str, ...]] = {
    "L1": _L1_TASKS,  # placement generalization
    "L2": _L1_TASKS,  # combinatorial generalization
    "L3": tuple(t for t in _L1_TASKS if t != "sweep_without_exceeding"),  # novel objects
    "L4": ("novel_adj_and_noun", "follow_motion", "sweep_without_touching", "same_texture"),  # novel tasks
}
LEVEL_POOLS: dict[str, Pools] = {
    "L1": Pools(DRAGGED_L1, BASE_L1, DRAGGED_TEXTURES_L1, BASE_TEXTURES_L1),
    "L2": Pools(DRAGGED_L1, BASE_L1, BASE_TEXTURES_L1, DRAGGED_TEXTURES_L1),  # texture sets swapped
    "L3": Pools(DRAGGED_NOVEL, BASE_NOVEL, DRAGGED_TEXTURES_L1, BASE_TEXTURES_L1),  # held-out shapes
    "L4": Pools(DRAGGED_L1, BASE_L1, DRAGGED_TEXTURES_L1, BASE_TEXTURES_L1),
}


def level_pools(level: str) -> Pools:
    if level not in LEVEL_POOLS:
        raise ValueError(f"unknown level {level!r}; available: {sorted(LEVEL_POOLS)}")
    return LEVEL_POOLS[level]


def implemented_level_tasks(level: str) -> tuple[str, ...]:
    """The level's tasks that this suite implements today."""
    level_pools(level)
    return tuple(t for t in LEVEL_TASKS[level] if t in TASKS)


def make_level(level: str, **kwargs: Any) -> dict[str, Any]:
    """A suite factory: one env per implemented task of ``level`` (kwargs as for ``TabletopEnv``)."""
    from envs.tabletop.env import TabletopEnv

    pools = level_pools(level)
    return {t: TabletopEnv(task=t, pools=pools, **kwargs) for t in implemented_level_tasks(level)}
