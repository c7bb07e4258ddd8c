"""05 rearrange_then_restore: "Rearrange objects to this setup {scene} and then restore." (needs memory)."""

from __future__ import annotations

import numpy as np

from envs.tabletop.engine import World
from envs.tabletop.tasks.rearrange import Rearrange


class RearrangeThenRestore(Rearrange):
    """Two phases: first every pictured object reaches its pictured spot (as in rearrange), then every one
    returns to where it started. The start arrangement is never shown again, so the agent must remember it;
    the start state itself does not count as restored because the goal scene must be reached first."""

    name = "rearrange_then_restore"
    oracle_max_steps = 8

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.origins: dict[int, np.ndarray] = {}
        self.reached_goal = False

    def generate(self, world: World, rng: np.random.Generator) -> None:
        super().generate(world, rng)
        self.origins = {b: world.xy(b).copy() for b in self.targets}
        self.reached_goal = False
        self.prompt = "Rearrange objects to this setup {scene} and then restore."

    def after_step(self, world: World) -> None:
        if not self.reached_goal and all(self.near(world, b, g) for b, g in self.goals.items()):
            self.reached_goal = True

    def check(self, world: World) -> tuple[bool, bool]:
        failure = self.any_out_of_workspace(world)
        restored = all(self.near(world, b, xy) for b, xy in self.origins.items())
        return (self.reached_goal and restored and not failure), failure

    def oracle_action(self, world: World, rng: np.random.Generator) -> dict | None:
        targets = self.origins if self.reached_goal else self.goals
        todo = [b for b, g in targets.items() if not self.near(world, b, g)]
        if not todo:
            return None
        body = max(todo, key=lambda b: float(np.linalg.norm(world.xy(b) - targets[b])))
        return self.place_action(world, body, targets[body])
