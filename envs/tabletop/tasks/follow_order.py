"""11 follow_order: "Stack objects in this order {frame_0} {frame_1} {frame_2}." The frames are scene images,
each showing one more object moved to its new place; the moves must happen in the pictured order."""

from __future__ import annotations

import numpy as np

from envs.tabletop.engine import World
from envs.tabletop.shapes import SHAPES
from envs.tabletop.tasks.base import Task


class FollowOrder(Task):
    """frame_0 is the start scene; frame_k shows the k-th object at its new place. A step that moves anything
    but does not complete exactly the next frame fails at once (a step that moves nothing is not judged).
    Success: every frame completed in order and the last scene holds. Objects are put down side by side
    (not stacked), so the kinematic and arm modes judge the same thing."""

    name = "follow_order"
    oracle_max_steps = 4

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sequence: list[tuple[int, np.ndarray]] = []
        self.next = 0
        self.bodies: list[int] = []
        self._snap: dict[int, np.ndarray] = {}

    def generate(self, world: World, rng: np.random.Generator) -> None:
        pools = self.pools
        n_moves = int(rng.integers(2, 4))
        n_obj = n_moves + int(rng.integers(0, 2))
        shapes = [str(s) for s in rng.choice(pools.dragged_shapes, size=n_obj, replace=False)]
        self.bodies = [
            self.add(world, rng, s, str(rng.choice(pools.dragged_textures)), "dragged") for s in shapes
        ]
        spots: list[tuple[np.ndarray, float]] = []
        self.sequence = []
        for body in self.bodies[:n_moves]:
            r = world.objects[body].shape.radius
            for _ in range(50):
                xy = world.sample_free_xy(rng, r, avoid=spots)
                if np.linalg.norm(xy - world.xy(body)) > 2.0 * self.pos_eps:
                    break
            else:
                raise RuntimeError("no free spot")
            spots.append((xy, SHAPES[shapes[len(self.sequence)]].radius))
            self.sequence.append((body, xy))
        world.settle()
        self.next = 0
        self._snap = self.snapshot(world)
        poses: dict[int, tuple] = {}
        self.placeholders = {"frame_0": self.scene_placeholder(world, self.bodies)}
        for k, (body, xy) in enumerate(self.sequence, start=1):
            poses[body] = (xy, world.pose(body)[1])
            self.placeholders[f"frame_{k}"] = self.scene_placeholder(world, self.bodies, dict(poses))
        frames = " ".join(f"{{frame_{k}}}" for k in range(len(self.sequence) + 1))
        self.prompt = f"Stack objects in this order {frames}."

    def after_step(self, world: World) -> None:
        moved = self.moved(world, self._snap)
        if moved and self.next < len(self.sequence):
            body, xy = self.sequence[self.next]
            if set(moved) <= {body} and self.near(world, body, xy):
                self.next += 1
            else:
                self.failed = True
        elif moved:
            self.failed = True
        self._snap = self.snapshot(world)

    def check(self, world: World) -> tuple[bool, bool]:
        failure = self.failed or self.any_out_of_workspace(world)
        done = self.next == len(self.sequence) and all(self.near(world, b, xy) for b, xy in self.sequence)
        return (done and not failure), failure

    def oracle_action(self, world: World, rng: np.random.Generator) -> dict | None:
        if self.next >= len(self.sequence):
            return None
        body, xy = self.sequence[self.next]
        return self.place_action(world, body, xy)
