"""Task families, one module each; ``TASKS`` maps the benchmark's task name to its class (paper order)."""

from __future__ import annotations

from envs.tabletop.tasks.base import Placeholder, Pools, SceneObject, Task
from envs.tabletop.tasks.follow_motion import FollowMotion
from envs.tabletop.tasks.follow_order import FollowOrder
from envs.tabletop.tasks.manipulate_old_neighbor import ManipulateOldNeighbor
from envs.tabletop.tasks.novel_adj import NovelAdj
from envs.tabletop.tasks.novel_adj_and_noun import NovelAdjAndNoun
from envs.tabletop.tasks.novel_noun import NovelNoun
from envs.tabletop.tasks.pick_in_order_then_restore import PickInOrderThenRestore
from envs.tabletop.tasks.rearrange import Rearrange
from envs.tabletop.tasks.rearrange_then_restore import RearrangeThenRestore
from envs.tabletop.tasks.rotate import Rotate
from envs.tabletop.tasks.same_shape import SameShape
from envs.tabletop.tasks.same_texture import SameTexture
from envs.tabletop.tasks.scene_understanding import SceneUnderstanding
from envs.tabletop.tasks.sweep_without_exceeding import SweepWithoutExceeding
from envs.tabletop.tasks.sweep_without_touching import SweepWithoutTouching
from envs.tabletop.tasks.twist import Twist
from envs.tabletop.tasks.visual_manipulation import VisualManipulation

TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (
        VisualManipulation,  # 01
        SceneUnderstanding,  # 02
        Rotate,  # 03
        Rearrange,  # 04
        RearrangeThenRestore,  # 05
        NovelAdj,  # 06
        NovelNoun,  # 07
        NovelAdjAndNoun,  # 08
        Twist,  # 09
        FollowMotion,  # 10
        FollowOrder,  # 11
        SweepWithoutExceeding,  # 12
        SweepWithoutTouching,  # 13
        SameTexture,  # 14
        SameShape,  # 15
        ManipulateOldNeighbor,  # 16
        PickInOrderThenRestore,  # 17
    )
}

NEW_FAMILIES: tuple[str, ...] = (  # the families added in issue 5 (the first six came with issue 4)
    "rearrange_then_restore", "novel_adj", "novel_adj_and_noun", "twist", "follow_motion", "follow_order",
    "same_texture", "same_shape", "manipulate_old_neighbor", "pick_in_order_then_restore",
    "sweep_without_touching",
)  # fmt: skip

__all__ = ["TASKS", "Placeholder", "Pools", "SceneObject", "Task"]
