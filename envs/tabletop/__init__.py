"""Our tabletop manipulation suite following VIMA-Bench's conventions (pybullet, headless, procedural assets).

``register_envs()`` registers one Gymnasium id per task (``uio2/tabletop-<task>-v0``);
``make_tabletop`` builds an env directly.
The oracle of any env: ``env.unwrapped.make_oracle().act(obs, info)``.
"""

from __future__ import annotations

from typing import Any

from envs.tabletop.tasks import TASKS, Pools

TASK_NAMES: tuple[str, ...] = tuple(TASKS)
ENTRY_POINT = "envs.tabletop.env:TabletopEnv"


def env_id(task: str) -> str:
    return f"uio2/tabletop-{task}-v0"


def register_envs() -> list[str]:
    """Register every task id with Gymnasium; ids already registered are left alone (idempotent)."""
    import gymnasium as gym

    ids = []
    for task in TASK_NAMES:
        eid = env_id(task)
        if eid not in gym.registry:
            gym.register(id=eid, entry_point=ENTRY_POINT, kwargs={"task": task})
        ids.append(eid)
    return ids


def make_tabletop(task: str, level: str | None = None, **kwargs: Any):
    """Build the env for ``task`` (a VIMA task name, optionally prefixed ``tabletop/``).

    ``level`` ("L1".."L4") picks that level's object/texture pools. Other kwargs go to ``TabletopEnv``:
    ``mode`` ("kinematic" | "arm"), ``pools``, ``render_mode``, ``bonus_steps``.
    """
    from envs.tabletop.env import TabletopEnv

    task = task.removeprefix("tabletop/")
    if level is not None:
        from envs.tabletop.levels import level_pools

        kwargs["pools"] = level_pools(level)
    return TabletopEnv(task=task, **kwargs)


def make_tabletop_suite(level: str, **kwargs: Any) -> dict[str, Any]:
    """One env per implemented task of a level ("L1".."L4"): ``{task: env}``."""
    from envs.tabletop.levels import make_level

    return make_level(level, **kwargs)


__all__ = ["TASK_NAMES", "Pools", "env_id", "make_tabletop", "make_tabletop_suite", "register_envs"]
