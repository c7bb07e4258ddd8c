"""09 twist: the angle is shown, never said: three before/after scene pairs define "twist", then "Now twist
all {texture} objects."."""

from __future__ import annotations

import math

import numpy as np

from envs.tabletop.engine import World
from envs.tabletop.shapes import SHAPES, yaw_error
from envs.tabletop.tasks.base import Placeholder, SceneObject, Task
from envs.tabletop.tasks.rotate import ANGLES

N_DEMOS = 3


def _turns_visibly(shape: str, angle: int) -> bool:
    """Doing nothing must fail: the angle may not be (close to) a symmetry of the shape."""
    sym = SHAPES[shape].symmetry
    return sym > 1e-9 and yaw_error(math.radians(angle), 0.0, sym) > math.radians(16.0)


class Twist(Task):
    """Success: every object of the named texture keeps its position (``pos_eps`` 0.05, as the benchmark) and
    its yaw is start + angle modulo symmetry (+/-15 deg). Objects of other textures are left alone.
    Failure: an object leaves the workspace."""

    name = "twist"
    oracle_max_steps = 5
    pos_eps = 0.05

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.angle = 0
        self.texture = ""
        self.targets: list[int] = []
        self.start: dict[int, tuple[np.ndarray, float]] = {}
        self.others: list[int] = []

    def generate(self, world: World, rng: np.random.Generator) -> None:
        pools = self.pools
        self.angle = int(rng.choice(ANGLES))
        ok_shapes = [s for s in pools.dragged_shapes if _turns_visibly(s, self.angle)]
        if not ok_shapes:
            raise RuntimeError("no shape shows this angle")
        self.texture = str(rng.choice(pools.dragged_textures))
        other_tex = [t for t in pools.dragged_textures if t != self.texture]
        n = int(rng.integers(1, 3))
        shapes = [str(s) for s in rng.choice(ok_shapes, size=n, replace=len(ok_shapes) < n)]
        self.targets = [self.add(world, rng, s, self.texture, "dragged") for s in shapes]
        self.others = [
            self.add(
                world, rng, str(rng.choice(pools.dragged_shapes)), str(rng.choice(other_tex)), "distractor"
            )
            for _ in range(int(rng.integers(1, 3)))
        ]
        world.settle()
        self.start = {b: (world.xy(b).copy(), world.pose(b)[1]) for b in self.targets}
        self.placeholders = {}
        demos = []
        for i in range(1, N_DEMOS + 1):
            s = str(rng.choice(ok_shapes))
            t = str(rng.choice(pools.dragged_textures))
            xy = rng.uniform([0.35, -0.35], [0.65, 0.35])
            yaw = float(rng.uniform(0, 2 * math.pi))
            self.placeholders[f"before_twist_{i}"] = Placeholder("scene", [SceneObject(s, t, xy, yaw)])
            after = SceneObject(s, t, xy, yaw + math.radians(self.angle))
            self.placeholders[f"after_twist_{i}"] = Placeholder("scene", [after])
            demos.append(f"From {{before_twist_{i}}} to {{after_twist_{i}}}.")
        self.prompt = (
            '"Twist" is defined as rotating object a specific angle. For examples: '
            + " ".join(demos)
            + f" Now twist all {self.texture} objects."
        )

    def goal_yaw(self, body: int) -> float:
        return self.start[body][1] + math.radians(self.angle)

    def done(self, world: World, body: int) -> bool:
        sym = world.objects[body].shape.symmetry
        return (
            self.near(world, body, self.start[body][0])
            and yaw_error(world.pose(body)[1], self.goal_yaw(body), sym) <= self.rot_eps
        )

    def check(self, world: World) -> tuple[bool, bool]:
        failure = self.any_out_of_workspace(world)
        return (all(self.done(world, b) for b in self.targets) and not failure), failure

    def oracle_action(self, world: World, rng: np.random.Generator) -> dict | None:
        todo = [b for b in self.targets if not self.done(world, b)]
        if not todo:
            return None
        body = todo[0]
        dyaw = self.goal_yaw(body) - world.pose(body)[1]
        return self.place_action(world, body, self.start[body][0], dyaw)
