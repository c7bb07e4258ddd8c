"""14 same_texture: "Put all objects with the same texture as {base_obj} into it." (held-out L4 family)."""

from __future__ import annotations

import numpy as np

from envs.tabletop.engine import World
from envs.tabletop.tasks.base import Task

MIN_START_GAP = 0.16  # dragged objects start this far from the base centre: nothing starts in it


class SameTexture(Task):
    """1-2 objects share the base's texture (their shapes vary); 1-2 distractors do not. Success: every
    matching object within ``pos_eps`` of the base (0.125 m, 0.0875 m for the bowl, as the benchmark), no
    distractor within it. Failure: a distractor in the base or an object leaving the workspace."""

    name = "same_texture"
    oracle_max_steps = 4
    pos_eps = 0.125

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.base = -1
        self.targets: list[int] = []
        self.distractors: list[int] = []

    # -------------------------------------------------------- what "same" means (same_shape overrides these)
    def draw_base(self, rng: np.random.Generator) -> tuple[str, str]:
        return str(rng.choice(self.pools.base_shapes)), str(rng.choice(self.pools.dragged_textures))

    def draw_match(self, rng: np.random.Generator, b_shape: str, b_tex: str) -> tuple[str, str]:
        return str(rng.choice(self.pools.dragged_shapes)), b_tex

    def draw_other(self, rng: np.random.Generator, b_shape: str, b_tex: str) -> tuple[str, str]:
        tex = str(rng.choice([t for t in self.pools.dragged_textures if t != b_tex]))
        return str(rng.choice(self.pools.dragged_shapes)), tex

    def prompt_text(self) -> str:
        return "Put all objects with the same texture as {base_obj} into it."

    # --------------------------------------------------------
    def generate(self, world: World, rng: np.random.Generator) -> None:
        b_shape, b_tex = self.draw_base(rng)
        self.base = self.add(world, rng, b_shape, b_tex, "base")
        if b_shape == "bowl":
            self.pos_eps = 0.0875
        avoid = [(world.xy(self.base), MIN_START_GAP)]
        self.targets = [
            self.add(world, rng, *self.draw_match(rng, b_shape, b_tex), "dragged", avoid=avoid)
            for _ in range(int(rng.integers(1, 3)))
        ]
        self.distractors = [
            self.add(world, rng, *self.draw_other(rng, b_shape, b_tex), "distractor", avoid=avoid)
            for _ in range(int(rng.integers(1, 3)))
        ]
        self.prompt = self.prompt_text()
        self.placeholders = {"base_obj": self.object_placeholder(world, self.base)}

    def check(self, world: World) -> tuple[bool, bool]:
        base_xy = world.xy(self.base)
        failure = self.any_out_of_workspace(world) or any(
            self.near(world, b, base_xy) for b in self.distractors
        )
        ok = all(self.near(world, b, base_xy) for b in self.targets)
        return (ok and not failure), failure

    def oracle_action(self, world: World, rng: np.random.Generator) -> dict | None:
        base_xy = world.xy(self.base)
        todo = [b for b in self.targets if not self.near(world, b, base_xy)]
        if not todo:
            return None
        done = len(self.targets) - len(todo)
        offset = 0.025 * done * np.array([1.0, 0.0])  # side by side rather than piled up
        return self.place_action(world, todo[0], base_xy + offset)
