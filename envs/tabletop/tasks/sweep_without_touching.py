"""13 sweep_without_touching: spatula task, "Sweep {one|two|all} {swept_obj} into {bounds} without touching
{constraint}." Laid out at VIMA-Bench's scale: the boundary is a flat three-sided rectangle at the robot's
side of the table (0.172 m deep, 0.3 m wide, centre x = 0.39), open away from the robot, and the constraint
bar lies just outside its opening. Ours blocks half of the opening (VIMA-Bench centres it), so blocks that
start behind the bar must first be pushed sideways into the free half (held-out L4 family)."""

from __future__ import annotations

import math

import numpy as np

from envs.tabletop.engine import World
from envs.tabletop.shapes import STRIP, line, three_sided_rectangle
from envs.tabletop.tasks.base import Placeholder, SceneObject, Task, make_action
from envs.tabletop.tasks.sweep_without_exceeding import BLOCK_HALF, NUMBERS, SLOT_DEPTH

# VIMA-Bench's geometry: the 0.2 m boundary scaled by 0.86 in depth and 1.5 in width, its closed side 0.14 m
# from the workspace's near edge; the bar touches the opening. Its bar renders 47 px (0.19 m) long in this
# task (measured on seeds 0-2, docs/tabletop.md), although its size range says 0.25 m: ours is what it shows.
ZONE_DEPTH, ZONE_WIDTH = 0.2 * 0.86, 0.2 * 1.5
ZONE_X = (0.38, 0.40)
LINE_LEN = 0.1875
LINE_END = 0.005  # the bar's inner end stops this far past the zone axis, on the blocked side
LANES = (0.035, 0.07)  # free lanes: y offsets from the zone axis on the open side, one per block
TOUCH = 0.004  # AABB clearance that still counts as touching the bar


class SweepWithoutTouching(Task):
    """Success: at least the requested number (all of them for "all") of swept-texture blocks fully inside
    the zone (between the opening and the back strip's centre line, and between the side strips' centre
    lines), none ever touching the bar (its AABB within 4 mm of the bar's, checked every 12 sim steps), the
    other-texture block outside. Failure: a touch, the other block inside, or a block leaving the
    workspace."""

    name = "sweep_without_touching"
    ee = "spatula"
    oracle_max_steps = 14
    pos_eps = 0.05

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.zone = np.zeros(2)
        self.side = 1.0  # +1: the bar blocks the +y half of the opening
        self.line = -1
        self.swept: list[int] = []
        self.others: list[int] = []
        self.lane_of: dict[int, float] = {}
        self.n_required = 1
        self.touched = False

    # ------------------------------------------------------------ geometry
    def opening_x(self) -> float:
        return float(self.zone[0] + ZONE_DEPTH / 2)

    def inside(self, world: World, body: int) -> bool:
        x, y = world.xy(body)
        zx, zy = self.zone
        return bool(
            x - BLOCK_HALF >= zx - ZONE_DEPTH / 2
            and x + BLOCK_HALF <= self.opening_x()
            and abs(y - zy) + BLOCK_HALF <= ZONE_WIDTH / 2
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
        self.zone = np.array([rng.uniform(*ZONE_X), self.side * -rng.uniform(0.0, 0.15)])
        zy = self.zone[1]
        s = self.side
        zone = world.add_object(
            "three-sided rectangle",
            zone_tex,
            self.zone,
            0.0,
            role="bounds",
            geometry=three_sided_rectangle(ZONE_DEPTH, ZONE_WIDTH),
        )
        line_x = self.opening_x() + STRIP / 2
        line_xy = [line_x, zy + s * (LINE_LEN / 2 + LINE_END)]
        self.line = world.add_object(
            "line", line_tex, line_xy, 0.0, role="constraint", geometry=line(LINE_LEN)
        )
        # flat and collision-free, as VIMA-Bench's: markings to respect, not walls to lean on
        world.make_ghost(zone)
        world.make_ghost(self.line)
        n = int(rng.integers(1, len(LANES) + 1))
        # swept blocks start behind the bar, at distinct depths so their sideways pushes never meet; the one
        # nearest the zone goes first, into the lane nearest the axis
        xs = rng.choice(np.arange(line_x + STRIP / 2 + 0.05, 0.73, 0.07), size=n, replace=False)
        self.swept, self.lane_of = [], {}
        for i, x in enumerate(sorted(xs)):
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
        slot_x = self.opening_x() - SLOT_DEPTH
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
