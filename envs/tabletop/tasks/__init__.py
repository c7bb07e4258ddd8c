"""Task families, one module each; ``TASKS`` maps the benchmark's task name to its class."""

from __future__ import annotations

from envs.tabletop.tasks.base import Placeholder, Pools, SceneObject, Task
from envs.tabletop.tasks.novel_noun import NovelNoun
from envs.tabletop.tasks.rearrange import Rearrange
from envs.tabletop.tasks.rotate import Rotate
from envs.tabletop.tasks.scene_understanding import SceneUnderstanding
from envs.tabletop.tasks.sweep_without_exceeding import SweepWithoutExceeding
from envs.tabletop.tasks.visual_manipulation import VisualManipulation

TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (VisualManipulation, SceneUnderstanding, Rotate, Rearrange, NovelNoun, SweepWithoutExceeding)
}

__all__ = ["TASKS", "Placeholder", "Pools", "SceneObject", "Task"]
