"""04 rearrange: "Rearrange to this {scene}." (goal arrangement given as a scene image)."""

from __future__ import annotations

import math

import numpy as np

from envs.tabletop.engine import World
from envs.tabletop.shapes import SHAPES
from envs.tabletop.tasks.base import Task


class Rearrange(Task):
    """2-3 objects must reach their pictured positions (xy within ``pos_eps``); one or two distractors are
    not pictured. Goal spots are free of other objects at the start, so each move is independent."""

    name = "rearrange"
    oracle_max_steps = 5

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.targets: list[int] = []
        self.goals: dict[int, np.ndarray] = {}

    def generate(self, world: World, rng: np.random.Generator) -> None:
        pools = self.pools
        n = int(rng.integers(2, 4))
        shapes = [str(s) for s in rng.choice(pools.dragged_shapes, size=n, replace=False)]
        texes = [str(t) for t in rng.choice(pools.dragged_textures, size=n, replace=True)]
        goal_spots: list[tuple[np.ndarray, float]] = []
        goal_yaws = []
        for s in shapes:  # goals first, so they are mutually free
            r = SHAPES[s].radius
            goal_spots.append((world.sample_free_xy(rng, r, avoid=goal_spots), r))
            goal_yaws.append(float(rng.uniform(0, 2 * math.pi)))
        self.targets = []
        for s, t, (gxy, _) in zip(shapes, texes, goal_spots, strict=True):
            r = SHAPES[s].radius
            for _ in range(50):
                xy = world.sample_free_xy(rng, r, avoid=goal_spots)
                if np.linalg.norm(xy - gxy) > 2.0 * self.pos_eps:
                    break
            else:
                raise RuntimeError("no start pose")
            self.targets.append(
                world.add_object(s, t, xy, float(rng.uniform(0, 2 * math.pi)), role="dragged")
            )
        for _ in range(int(rng.integers(1, 3))):
            s = str(rng.choice([x for x in pools.dragged_shapes if x not in shapes]))
            t = str(rng.choice(pools.dragged_textures))
            self.add(world, rng, s, t, "distractor", avoid=goal_spots)
        self.goals = {b: g for b, (g, _) in zip(self.targets, goal_spots, strict=True)}
        poses = {b: (g, y) for b, (g, _), y in zip(self.targets, goal_spots, goal_yaws, strict=True)}
        self.prompt = "Rearrange to this {scene}."
        self.placeholders = {"scene": self.scene_placeholder(world, self.targets, poses)}

    def check(self, world: World) -> tuple[bool, bool]:
        failure = self.any_out_of_workspace(world)
        ok = all(self.near(world, b, g) for b, g in self.goals.items())
        return (ok and not failure), failure

    def oracle_action(self, world: World, rng: np.random.Generator) -> dict | None:
        todo = [b for b, g in self.goals.items() if not self.near(world, b, g)]
        if not todo:
            return None
        body = max(todo, key=lambda b: float(np.linalg.norm(world.xy(b) - self.goals[b])))
        return self.place_action(world, body, self.goals[body])
