"""01 visual_manipulation: "Put the {dragged_obj_1} into the {base_obj}." (objects shown as images)."""

from __future__ import annotations

import numpy as np

from envs.tabletop.engine import World
from envs.tabletop.tasks.base import Task


class PutInBaseTask(Task):
    """Shared logic of the "put a dragged object into a base" families: one target, one base, distractors.

    Success: the dragged object's centre within ``pos_eps`` of the base's centre. Failure: any object leaves
    the workspace or a distractor ends in the base.
    """

    num_distractors: tuple[int, int] = (1, 2)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.dragged = -1
        self.base = -1
        self.distractors: list[int] = []

    def build(self, world: World, rng: np.random.Generator, distinct_textures: bool = False) -> None:
        """Dragged object, base and distractors that differ from the dragged one in shape or texture."""
        pools = self.pools
        d_shape = str(rng.choice(pools.dragged_shapes))
        d_tex = str(rng.choice(pools.dragged_textures))
        b_shape = str(rng.choice(pools.base_shapes))
        b_tex = str(rng.choice(pools.base_textures))
        self.base = self.add(world, rng, b_shape, b_tex, "base")
        self.dragged = self.add(world, rng, d_shape, d_tex, "dragged")
        self.distractors = []
        used_tex = {d_tex, b_tex}
        for _ in range(int(rng.integers(self.num_distractors[0], self.num_distractors[1] + 1))):
            for _ in range(50):
                s = str(rng.choice(pools.dragged_shapes))
                t = str(rng.choice(pools.dragged_textures))
                if distinct_textures and t in used_tex:
                    continue
                if self.distractor_ok(s, t, d_shape, d_tex):
                    break
            else:
                raise RuntimeError("no distractor")
            used_tex.add(t)
            self.distractors.append(self.add(world, rng, s, t, "distractor"))

    @staticmethod
    def distractor_ok(shape: str, texture: str, d_shape: str, d_tex: str) -> bool:
        return (shape, texture) != (d_shape, d_tex)

    def check(self, world: World) -> tuple[bool, bool]:
        base_xy = world.xy(self.base)
        failure = self.any_out_of_workspace(world) or any(
            self.near(world, b, base_xy) for b in self.distractors
        )
        success = not failure and self.near(world, self.dragged, base_xy)
        return success, failure

    def oracle_action(self, world: World, rng: np.random.Generator) -> dict | None:
        if self.near(world, self.dragged, world.xy(self.base)):
            return None
        return self.place_action(world, self.dragged, world.xy(self.base))


class VisualManipulation(PutInBaseTask):
    name = "visual_manipulation"
    oracle_max_steps = 3

    def generate(self, world: World, rng: np.random.Generator) -> None:
        self.build(world, rng)
        self.prompt = "Put the {dragged_obj_1} into the {base_obj}."
        self.placeholders = {
            "dragged_obj_1": self.object_placeholder(world, self.dragged),
            "base_obj": self.object_placeholder(world, self.base),
        }
