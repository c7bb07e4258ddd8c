"""ENV strings of the command line -> env factories (README.md, "Command line").

    tabletop/<task>      our VIMA-style suite, one task family
    tabletop/L1..L4      a whole evaluation level (every implemented family of it)
    pointnav             our PointNav;  pointnav-audio: the audio-goal variant
    vima/<task>          the real VIMA-Bench through the adapter (needs vima_bench)
    vima/L1..L4          a whole VIMA-Bench evaluation partition (its own task list)
    habitat/<config>     habitat-lab PointNav through the adapter (needs habitat)

Every env also exists under Gymnasium ids (`uio2/...`), registered by `register_all()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

LEVELS = ("L1", "L2", "L3", "L4")


@dataclass(frozen=True)
class EnvEntry:
    """One task of an ENV string: its name and a factory for a fresh env."""

    task: str
    make: Callable[[], gym.Env]
    level: str | None = None  # the evaluation level (L1..L4) it belongs to, when one was asked for


def register_all() -> None:
    """Register every env of the project with Gymnasium (idempotent)."""
    from envs import register_envs

    register_envs()


def resolve_env(env: str, **kwargs: Any) -> list[EnvEntry]:
    """The tasks an ENV string stands for; `kwargs` go to the env constructors."""
    if env in ("pointnav", "pointnav-audio"):
        from envs.pointnav.audio_env import PointNavAudioEnv
        from envs.pointnav.env import PointNavEnv

        cls = PointNavEnv if env == "pointnav" else PointNavAudioEnv
        return [EnvEntry(env, lambda: cls(**kwargs))]
    family, _, name = env.partition("/")
    if family == "tabletop" and name:
        from envs.tabletop import TASK_NAMES, make_tabletop

        if name in LEVELS:
            from envs.tabletop.levels import implemented_level_tasks

            return [
                EnvEntry(task, lambda task=task: make_tabletop(task, level=name, **kwargs), name)
                for task in implemented_level_tasks(name)
            ]
        if name not in TASK_NAMES:
            raise ValueError(f"unknown tabletop task {name!r}; available: {', '.join(TASK_NAMES)} or L1..L4")
        return [EnvEntry(name, lambda: make_tabletop(name, **kwargs), kwargs.get("level"))]
    if family == "vima" and name:
        from envs.vima_bench import VIMA_TASKS, level_tasks, make_vima

        level = kwargs.pop("level", None)  # --level: the benchmark's partition for its task kwargs
        if name in LEVELS:
            if level not in (None, name):
                raise ValueError(f"--level {level} contradicts the env {env!r}")
            return [
                EnvEntry(task, lambda task=task: make_vima(task, partition=name, **kwargs), name)
                for task in level_tasks(name)
            ]
        if name not in VIMA_TASKS:
            tasks = ", ".join(VIMA_TASKS)
            raise ValueError(f"unknown VIMA-Bench task {name!r}; available: {tasks} or L1..L4")
        if level is not None:
            kwargs.setdefault("partition", level)
        return [EnvEntry(name, lambda: make_vima(name, **kwargs), level)]
    if family == "habitat" and name:
        from envs.habitat import HabitatPointNavEnv

        return [EnvEntry(name, lambda: HabitatPointNavEnv(config_path=name, **kwargs))]
    raise ValueError(
        f"unknown env {env!r}; expected tabletop/<task>, tabletop/L1..L4, pointnav, pointnav-audio, "
        "vima/<task> or habitat/<config>"
    )


def oracle_for(env: gym.Env, seed: int | None) -> Callable[[dict, dict], Any] | None:
    """The env's privileged expert as `(obs, info) -> action`, or None if it has none."""
    from policies.base import env_oracle

    return env_oracle(env, seed)
