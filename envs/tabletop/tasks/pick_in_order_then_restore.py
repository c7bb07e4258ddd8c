"""17 pick_in_order_then_restore: "Put {dragged_obj} into {base_obj_1} then {base_obj_2}. Finally restore it
into its original container." (the original container is never pictured: memory)."""

from __future__ import annotations

import math

import numpy as np

from envs.tabletop.engine import World
from envs.tabletop.primitives import KinematicExecutor
from envs.tabletop.tasks.base import Task


class PickInOrderThenRestore(Task):
    """The object starts inside a container; it must visit base 1, then base 2, then go back to the
    container, one move each (``pos_eps`` 0.05, as the benchmark). A step that moves anything but does not
    bring the object to the next goal (e.g. base 2 before base 1) fails at once; a step that moves nothing
    is not judged. Success: all three goals reached in order."""

    name = "pick_in_order_then_restore"
    oracle_max_steps = 4
    pos_eps = 0.05

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.target = -1
        self.bases: list[int] = []  # [base 1, base 2, original container]
        self.others: list[int] = []
        self.stage = 0
        self._snap: dict[int, np.ndarray] = {}

    def generate(self, world: World, rng: np.random.Generator) -> None:
        pools = self.pools
        texes = [
            str(t) for t in rng.choice(pools.base_textures, size=3, replace=len(pools.base_textures) < 3)
        ]
        shapes = [str(s) for s in rng.choice(pools.base_shapes, size=3)]
        self.bases = [self.add(world, rng, s, t, "base") for s, t in zip(shapes, texes, strict=True)]
        origin = self.bases[2]
        shape = str(rng.choice(pools.dragged_shapes))
        tex = str(rng.choice(pools.dragged_textures))
        xy, yaw = world.xy(origin), float(rng.uniform(0, 2 * math.pi))
        self.target = world.add_object(shape, tex, xy, yaw, role="dragged", z=1.0)
        z = KinematicExecutor.support_height(world, self.target, xy, yaw)
        world.set_pose(self.target, [xy[0], xy[1], z + 0.003], yaw)
        self.others = []
        for _ in range(int(rng.integers(0, 2))):
            s, t = str(rng.choice(pools.dragged_shapes)), str(rng.choice(pools.dragged_textures))
            self.others.append(self.add(world, rng, s, t, "distractor"))
        world.settle()
        self.stage = 0
        self._snap = self.snapshot(world)
        self.prompt = (
            "Put {dragged_obj} into {base_obj_1} then {base_obj_2}. "
            "Finally restore it into its original container."
        )
        self.placeholders = {
            "dragged_obj": self.object_placeholder(world, self.target),
            "base_obj_1": self.object_placeholder(world, self.bases[0]),
            "base_obj_2": self.object_placeholder(world, self.bases[1]),
        }

    def after_step(self, world: World) -> None:
        moved = self.moved(world, self._snap)
        if moved:
            if (
                self.stage < len(self.bases)
                and set(moved) <= {self.target}
                and self.near(world, self.target, world.xy(self.bases[self.stage]))
            ):
                self.stage += 1
            else:
                self.failed = True
        self._snap = self.snapshot(world)

    def check(self, world: World) -> tuple[bool, bool]:
        failure = self.failed or self.any_out_of_workspace(world)
        ok = self.stage == len(self.bases) and self.near(world, self.target, world.xy(self.bases[-1]))
        return (ok and not failure), failure

    def oracle_action(self, world: World, rng: np.random.Generator) -> dict | None:
        if self.stage >= len(self.bases):
            return None
        return self.place_action(world, self.target, world.xy(self.bases[self.stage]))
