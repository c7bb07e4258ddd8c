"""13 sweep_without_touching: spatula task, "Sweep {one|two|all} {swept_obj} into {bounds} without touching
{constraint}." The constraint line lies across half of the approach to the zone's opening, so blocks that
start behind it must first be pushed sideways into the free half (held-out L4 family)."""

from __future__ import annotations

import math

import numpy as np
import pybullet as p

from envs.tabletop.engine import World
from envs.tabletop.tasks.base import Placeholder, SceneObject, Task, make_action
from envs.tabletop.tasks.sweep_without_exceeding import BLOCK_HALF, NUMBERS, WALL, WALL_TOL, ZONE_HX, ZONE_HY

LINE_HALF = 0.11  # half length of the "line" shape (shapes.py)
LINE_GAP = 0.14  # the line lies this far in front of the zone centre (x)
LINE_END = 0.005  # its inner end stops this far past the zone axis, on the blocked side
LANES = (0.035, 0.07)  # free lanes: y offsets from the zone axis on the open side, one per block
TOUCH = 0.004  # AABB clearance that still counts as touching the line


class SweepWithoutTouching(Task):
    """Success: at least the requested number (all of them for "all") of swept-texture blocks fully inside
    the zone, none ever touching the line (its AABB within 4 mm of the line's, checked every 12 sim steps),
    the other-texture block outside. Failure: a touch, the other block inside, or a block leaving the
    workspace. Our layout differs from the benchmark's (zone far from the robot, line across half of its
    approach), the rules are the same."""

    name = "sweep_without_touching"
    ee = "spatula"
    oracle_max_steps = 14
    pos_eps = 0.05

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.zone = np.zeros(2)
        self.side = 1.0  # +1: the line blocks the +y half of the approach
        self.line = -1
        self.swept: list[int] = []
        self.others: list[int] = []
        self.lane_of: dict[int, float] = {}
        self.n_required = 1
        self.touched = False

    # ------------------------------------------------------------ geometry
    def inside(self, world: World, body: int) -> bool:
        x, y = world.xy(body)
        zx, zy = self.zone
        return bool(
            x - BLOCK_HALF >= zx - ZONE_HX
            and x + BLOCK_HALF <= zx + ZONE_HX - WALL + WALL_TOL
            and abs(y - zy) + BLOCK_HALF <= ZONE_HY - WALL + WALL_TOL
        )

    def _monitor(self, world: World) -> None:
        llo, lhi = world.aabb(self.line)
        for b in self.swept:
            lo, hi = world.aabb(b)
            if (
                hi[0] >= llo[0] - TOUCH
                and lo[0] <= lhi[0] + TOUCH
                and hi[1] >= llo[1] - TOUCH
                and lo[1] <= lhi[1] + TOUCH
            ):
                self.touched = True

    # ------------------------------------------------------------ generation
    def generate(self, world: World, rng: np.random.Generator) -> None:
        self.touched = False
        pools = self.pools
        tex = str(rng.choice(pools.dragged_textures))
        other_tex = str(rng.choice([t for t in pools.dragged_textures if t != tex]))
        zone_tex = str(rng.choice(pools.base_textures))
        line_tex = str(rng.choice([t for t in pools.base_textures if t != zone_tex]))
        self.side = float(rng.choice([-1.0, 1.0]))
        self.zone = np.array([rng.uniform(0.62, 0.66), self.side * -rng.uniform(0.0, 0.22)])
        zx, zy = self.zone
        s = self.side
        world.add_object("three-sided rectangle", zone_tex, self.zone, 0.0, role="bounds")
        line_xy = [zx - LINE_GAP, zy + s * (LINE_HALF + LINE_END)]
        self.line = world.add_object("line", line_tex, line_xy, 0.0, role="constraint")
        # collision-free line: a constraint to respect, not a wall to lean on
        p.setCollisionFilterGroupMask(self.line, -1, 0, 0, physicsClientId=world.client)
        for link in range(p.getNumJoints(self.line, physicsClientId=world.client)):
            p.setCollisionFilterGroupMask(self.line, link, 0, 0, physicsClientId=world.client)
        n = int(rng.integers(1, len(LANES) + 1))
        # swept blocks start behind the line, at distinct depths so their sideways pushes never meet
        xs = rng.choice(np.arange(0.31, zx - LINE_GAP - 0.055, 0.07), size=n, replace=False)
        self.swept, self.lane_of = [], {}
        for i, x in enumerate(sorted(xs, reverse=True)):
            y = zy + s * rng.uniform(0.05, 0.13)
            b = world.add_object("small block", tex, [x, y], float(rng.uniform(0, math.pi / 2)), role="swept")
            self.swept.append(b)
            self.lane_of[b] = zy - s * LANES[i]
        self.others = []
        for _ in range(50):  # the other-texture block: well away from every lane and the zone
            xy = np.array([rng.uniform(0.3, 0.7), rng.uniform(-0.45, 0.45)])
            if abs(xy[1] - zy) > 0.3:
                break
        else:
            raise RuntimeError("no spot for the other block")
        self.others.append(world.add_object("small block", other_tex, xy, 0.0, role="swept"))
        det = str(rng.choice([NUMBERS[k] for k in range(1, n + 1)] + ["all"]))
        self.n_required = n if det == "all" else next(k for k, w in NUMBERS.items() if w == det)
        world.monitor = self._monitor
        self.prompt = f"Sweep {det} {{swept_obj}} into {{bounds}} without touching {{constraint}}."
        self.placeholders = {
            "swept_obj": Placeholder("object", [SceneObject("small block", tex, np.zeros(2), 0.0)]),
            "bounds": Placeholder(
                "object", [SceneObject("three-sided rectangle", zone_tex, np.zeros(2), 0.0)]
            ),
            "constraint": Placeholder("object", [SceneObject("line", line_tex, np.zeros(2), 0.0)]),
        }

    # ------------------------------------------------------------ rules
    def check(self, world: World) -> tuple[bool, bool]:
        failure = (
            self.touched
            or any(self.inside(world, b) for b in self.others)
            or self.any_out_of_workspace(world)
        )
        ok = sum(self.inside(world, b) for b in self.swept) >= self.n_required
        return (ok and not failure), failure

    # ------------------------------------------------------------ oracle
    def oracle_action(self, world: World, rng: np.random.Generator) -> dict | None:
        """Block by block (deepest first): sideways into its free lane, then straight into the zone."""
        slot_x = self.zone[0] - ZONE_HX + 0.035
        if sum(self.inside(world, b) for b in self.swept) >= self.n_required:
            return None
        for b in self.swept:
            if self.inside(world, b):
                continue
            x, y = world.xy(b)
            lane = self.lane_of[b]
            if abs(y - lane) > 0.012:
                return make_action([x, y], 0.0, [x, lane], 0.0)
            return make_action([x, y], 0.0, [slot_x, lane], 0.0)
        return None
