"""10 follow_motion: "Follow this motion for {dragged_obj}: {frame_0} {frame_1} {frame_2}." The frames are
scene images; the object must visit the pictured positions one step at a time, in order."""

from __future__ import annotations

import numpy as np

from envs.tabletop.engine import World
from envs.tabletop.shapes import SHAPES
from envs.tabletop.tasks.base import Task


class FollowMotion(Task):
    """frame_0 is the start scene, frame_k (k >= 1) the scene after the k-th move of the target. A step that
    moves anything but does not bring the target to the next pictured position fails at once; a step that
    moves nothing is not judged (it only spends budget). Success: every waypoint visited in order."""

    name = "follow_motion"
    oracle_max_steps = 4

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.target = -1
        self.waypoints: list[np.ndarray] = []
        self.next = 0
        self.others: list[int] = []
        self._snap: dict[int, np.ndarray] = {}

    def generate(self, world: World, rng: np.random.Generator) -> None:
        pools = self.pools
        shape = str(rng.choice(pools.dragged_shapes))
        tex = str(rng.choice(pools.dragged_textures))
        self.target = self.add(world, rng, shape, tex, "dragged")
        self.others = []
        for _ in range(int(rng.integers(1, 3))):
            s = str(rng.choice([x for x in pools.dragged_shapes if x != shape]))
            self.others.append(self.add(world, rng, s, str(rng.choice(pools.dragged_textures)), "distractor"))
        r = SHAPES[shape].radius
        self.waypoints = []
        prev = world.xy(self.target)
        for _ in range(int(rng.integers(2, 4))):
            for _ in range(50):
                avoid = [(w, r) for w in self.waypoints]
                xy = world.sample_free_xy(rng, r, avoid=avoid)
                if np.linalg.norm(xy - prev) > 2.0 * self.pos_eps:
                    break
            else:
                raise RuntimeError("no waypoint")
            self.waypoints.append(xy)
            prev = xy
        world.settle()
        self.next = 0
        self._snap = self.snapshot(world)
        bodies = [self.target, *self.others]
        self.placeholders = {"dragged_obj": self.object_placeholder(world, self.target)}
        self.placeholders["frame_0"] = self.scene_placeholder(world, bodies)
        for k, wp in enumerate(self.waypoints, start=1):
            self.placeholders[f"frame_{k}"] = self.scene_placeholder(
                world, bodies, {self.target: (wp, world.pose(self.target)[1])}
            )
        frames = " ".join(f"{{frame_{k}}}" for k in range(len(self.waypoints) + 1))
        self.prompt = f"Follow this motion for {{dragged_obj}}: {frames}."

    def after_step(self, world: World) -> None:
        moved = self.moved(world, self._snap)
        if moved and self.next < len(self.waypoints):
            if set(moved) <= {self.target} and self.near(world, self.target, self.waypoints[self.next]):
                self.next += 1
            else:
                self.failed = True
        self._snap = self.snapshot(world)

    def check(self, world: World) -> tuple[bool, bool]:
        failure = self.failed or self.any_out_of_workspace(world)
        return (self.next == len(self.waypoints) and not failure), failure

    def oracle_action(self, world: World, rng: np.random.Generator) -> dict | None:
        if self.next >= len(self.waypoints):
            return None
        return self.place_action(world, self.target, self.waypoints[self.next])
