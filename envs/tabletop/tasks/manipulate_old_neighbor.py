"""16 manipulate_old_neighbor: "First put {dragged_obj} into {base_obj} then put the object that was
previously at its {direction} into the same {base_obj}." (the neighbour must be remembered)."""

from __future__ import annotations

import math

import numpy as np

from envs.tabletop.engine import World
from envs.tabletop.shapes import SHAPES
from envs.tabletop.spaces import POSITION_HIGH, POSITION_LOW
from envs.tabletop.tasks.base import Task

# compass directions in the robot frame, as shapes.py names the walls: north +x, south -x, west +y, east -y
DIRECTIONS: dict[str, np.ndarray] = {
    "north": np.array([1.0, 0.0]),
    "south": np.array([-1.0, 0.0]),
    "west": np.array([0.0, 1.0]),
    "east": np.array([0.0, -1.0]),
}
NEIGHBOUR_GAP = (0.02, 0.06)  # free gap between the footprints of the dragged object and its neighbour


class ManipulateOldNeighbor(Task):
    """The neighbour sits next to the dragged object in the named direction and is the only object in that
    direction's 90-degree cone, so "previously at its west" is unambiguous. Order rule: the first step that
    moves anything must put the dragged object (alone) in the base, the next one the neighbour; anything else
    fails at once. Success: both in the base (``pos_eps`` 0.10)."""

    name = "manipulate_old_neighbor"
    oracle_max_steps = 4

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.base = -1
        self.dragged = -1
        self.neighbour = -1
        self.direction = ""
        self.others: list[int] = []
        self.stage = 0
        self._snap: dict[int, np.ndarray] = {}

    def generate(self, world: World, rng: np.random.Generator) -> None:
        pools = self.pools
        self.direction = str(rng.choice(list(DIRECTIONS)))
        u = DIRECTIONS[self.direction]
        b_shape, b_tex = str(rng.choice(pools.base_shapes)), str(rng.choice(pools.base_textures))
        self.base = self.add(world, rng, b_shape, b_tex, "base")
        shapes = [str(s) for s in rng.choice(pools.dragged_shapes, size=2, replace=False)]
        texes = [str(t) for t in rng.choice(pools.dragged_textures, size=2)]
        r0, r1 = SHAPES[shapes[0]].radius, SHAPES[shapes[1]].radius
        for _ in range(200):  # the pair first, so that the neighbour lands inside the workspace
            xy0 = world.sample_free_xy(rng, r0)
            gap = r0 + r1 + rng.uniform(*NEIGHBOUR_GAP)
            xy1 = xy0 + u * gap + u[::-1] * rng.uniform(-0.03, 0.03)
            inside = np.all(xy1 >= POSITION_LOW + r1 + 0.02) and np.all(xy1 <= POSITION_HIGH - r1 - 0.02)
            if inside and np.linalg.norm(xy1 - world.xy(self.base)) > SHAPES[b_shape].radius + r1 + 0.03:
                break
        else:
            raise RuntimeError("no room for the pair")
        self.dragged = world.add_object(
            shapes[0], texes[0], xy0, float(rng.uniform(0, 2 * math.pi)), role="dragged"
        )
        self.neighbour = world.add_object(
            shapes[1], texes[1], xy1, float(rng.uniform(0, 2 * math.pi)), role="distractor"
        )
        self.others = []
        for _ in range(int(rng.integers(1, 3))):
            s = str(rng.choice(pools.dragged_shapes))
            for _ in range(50):
                xy = world.sample_free_xy(rng, SHAPES[s].radius)
                d = xy - xy0
                if np.dot(d, u) <= math.cos(math.pi / 4) * np.linalg.norm(d):  # outside the cone
                    break
            else:
                raise RuntimeError("no distractor spot outside the cone")
            tex = str(rng.choice(pools.dragged_textures))
            self.others.append(
                world.add_object(s, tex, xy, float(rng.uniform(0, 2 * math.pi)), role="distractor")
            )
        world.settle()
        self.stage = 0
        self._snap = self.snapshot(world)
        self.prompt = (
            "First put {dragged_obj} into {base_obj} then put the object that was previously at its "
            f"{self.direction} into the same {{base_obj}}."
        )
        self.placeholders = {
            "dragged_obj": self.object_placeholder(world, self.dragged),
            "base_obj": self.object_placeholder(world, self.base),
        }

    def _order(self) -> list[int]:
        return [self.dragged, self.neighbour]

    def after_step(self, world: World) -> None:
        moved = self.moved(world, self._snap)
        if moved:
            order = self._order()
            done = set(order[: self.stage])  # jostled when the next one lands on them: not a new move
            if (
                self.stage < len(order)
                and set(moved) - done <= {order[self.stage]}
                and self.near(world, order[self.stage], world.xy(self.base))
            ):
                self.stage += 1
            else:
                self.failed = True
        self._snap = self.snapshot(world)

    def check(self, world: World) -> tuple[bool, bool]:
        base_xy = world.xy(self.base)
        failure = (
            self.failed
            or self.any_out_of_workspace(world)
            or any(self.near(world, b, base_xy) for b in self.others)
        )
        ok = self.stage == 2 and all(self.near(world, b, base_xy) for b in self._order())
        return (ok and not failure), failure

    def oracle_action(self, world: World, rng: np.random.Generator) -> dict | None:
        if self.stage >= 2:
            return None
        body = self._order()[self.stage]
        offset = 0.025 * self.stage * np.array([1.0, 0.0])
        return self.place_action(world, body, world.xy(self.base) + offset)
