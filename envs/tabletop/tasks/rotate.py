"""03 rotate: "Rotate the {dragged_obj} N degrees." (N in 30..150, counter-clockwise seen from above)."""

from __future__ import annotations

import math

import numpy as np

from envs.tabletop.engine import World
from envs.tabletop.shapes import SHAPES, yaw_error
from envs.tabletop.tasks.base import Task

ANGLES = (30, 60, 90, 120, 150)


class Rotate(Task):
    """Success: the object stays within ``pos_eps`` of its start and its yaw equals start + N modulo its
    symmetry (+/-15 deg). Only shape/angle pairs where doing nothing fails are drawn."""

    name = "rotate"
    oracle_max_steps = 3

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.target = -1
        self.start_xy = np.zeros(2)
        self.goal_yaw = 0.0
        self.others: list[int] = []

    def generate(self, world: World, rng: np.random.Generator) -> None:
        pools = self.pools
        for _ in range(100):
            shape = str(rng.choice(pools.dragged_shapes))
            angle = int(rng.choice(ANGLES))
            sym = SHAPES[shape].symmetry
            if sym > 1e-9 and yaw_error(math.radians(angle), 0.0, sym) > math.radians(16.0):
                break
        else:
            raise RuntimeError("no rotatable shape in the pool")
        tex = str(rng.choice(pools.dragged_textures))
        self.target = self.add(world, rng, shape, tex, "dragged")
        self.others = []
        for _ in range(int(rng.integers(1, 3))):
            s, t = str(rng.choice(pools.dragged_shapes)), str(rng.choice(pools.dragged_textures))
            if (s, t) == (shape, tex):
                t = str(rng.choice([x for x in pools.dragged_textures if x != tex]))
            self.others.append(self.add(world, rng, s, t, "distractor"))
        world.settle()
        self.start_xy = world.xy(self.target).copy()
        self.goal_yaw = world.pose(self.target)[1] + math.radians(angle)
        self.angle = angle
        self.prompt = f"Rotate the {{dragged_obj}} {angle} degrees."
        self.placeholders = {"dragged_obj": self.object_placeholder(world, self.target)}

    def check(self, world: World) -> tuple[bool, bool]:
        failure = self.any_out_of_workspace(world)
        o = world.objects[self.target]
        ok = (
            self.near(world, self.target, self.start_xy)
            and yaw_error(world.pose(self.target)[1], self.goal_yaw, o.shape.symmetry) <= self.rot_eps
        )
        return (ok and not failure), failure

    def oracle_action(self, world: World, rng: np.random.Generator) -> dict | None:
        dyaw = self.goal_yaw - world.pose(self.target)[1]
        return self.place_action(world, self.target, self.start_xy, dyaw)
