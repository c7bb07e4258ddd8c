"""12 sweep_without_exceeding: spatula task, "Sweep two {swept_obj} into {bounds} without exceeding
{constraint}." Laid out as VIMA-Bench lays it out: the boundary is a large flat three-sided rectangle at the
robot's side of the table (x = 0.41), open away from the robot; the constraint bar lies across it, and the
blocks start beyond the opening and are swept towards the robot: a block pushed too deep crosses the bar."""

from __future__ import annotations

import math

import numpy as np

from envs.tabletop.engine import World
from envs.tabletop.shapes import STRIP, line, three_sided_rectangle
from envs.tabletop.tasks.base import Placeholder, SceneObject, Task, make_action

NUMBERS = {1: "one", 2: "two", 3: "three"}
# VIMA-Bench's geometry: boundary 0.2 m scaled by 1.35 (strip centre to strip centre), its closed side 0.16 m
# from the workspace's near edge (centre x = 0.41), the bar 0.25 m scaled by 1.35, its centre between 25% and
# 60% of the boundary's depth from the closed side.
ZONE_SIZE = 0.2 * 1.35
ZONE_X = (0.405, 0.42)  # VIMA-Bench: 0.41; the back strip stays on the table
LINE_LEN = 0.25 * 1.35
LINE_RANGE = (0.25, 0.6)
BLOCK_HALF = 0.015
SLOT_DEPTH = 0.035  # a swept block's centre ends this far inside the opening
LANES = (-0.07, 0.0, 0.07)
LANE_MAX = 0.09  # blocks further off the zone axis cannot be pushed straight in


class SweepWithoutExceeding(Task):
    """Success: exactly N blocks of the swept texture fully inside the zone (between its opening and the
    bar, and between the side strips' centre lines, as VIMA-Bench's zone), none ever touching/crossing the bar
    (checked every 12 sim steps), no other-texture block inside. Failure: too many inside, a wrong block
    inside, a bar violation, or a block leaving the workspace."""

    name = "sweep_without_exceeding"
    ee = "spatula"
    oracle_max_steps = 8
    pos_eps = 0.05

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.n = 1
        self.zone = np.zeros(2)
        self.bar_x = 0.0
        self.swept: list[int] = []
        self.others: list[int] = []
        self.violated = False

    # ------------------------------------------------------------ geometry
    def line_x(self) -> float:
        return float(self.bar_x)

    def opening_x(self) -> float:
        return float(self.zone[0] + ZONE_SIZE / 2)

    def slot_x(self) -> float:
        return self.opening_x() - SLOT_DEPTH

    def inside(self, world: World, body: int) -> bool:
        x, y = world.xy(body)
        return bool(
            x - BLOCK_HALF >= self.line_x() + STRIP / 2
            and x + BLOCK_HALF <= self.opening_x()
            and abs(y - self.zone[1]) + BLOCK_HALF <= ZONE_SIZE / 2
        )

    def slots(self) -> list[np.ndarray]:
        return [np.array([self.slot_x(), self.zone[1] + dy]) for dy in (0.0, LANES[0], LANES[2])]

    def _monitor(self, world: World) -> None:
        for b in self.swept:
            lo, hi = world.aabb(b)
            if (
                abs(world.xy(b)[1] - self.zone[1]) <= LINE_LEN / 2 + BLOCK_HALF
                and hi[0] >= self.line_x() - STRIP / 2 - 0.004
                and lo[0] <= self.line_x() + STRIP / 2 + 0.004
            ):
                self.violated = True

    # ------------------------------------------------------------ generation
    def generate(self, world: World, rng: np.random.Generator) -> None:
        self.violated = False
        pools = self.pools
        self.n = int(rng.integers(1, 4))
        tex = str(rng.choice(pools.dragged_textures))
        other_tex = str(rng.choice([t for t in pools.dragged_textures if t != tex]))
        zone_tex = str(rng.choice(pools.base_textures))
        line_tex = str(rng.choice([t for t in pools.base_textures if t != zone_tex]))
        self.zone = np.array([rng.uniform(*ZONE_X), rng.uniform(-0.15, 0.15)])
        lo, hi = (self.zone[0] + (f - 0.5) * ZONE_SIZE for f in LINE_RANGE)
        self.bar_x = float(rng.uniform(lo, hi))
        zone = world.add_object(
            "three-sided rectangle",
            zone_tex,
            self.zone,
            0.0,
            role="bounds",
            geometry=three_sided_rectangle(ZONE_SIZE, ZONE_SIZE),
        )
        bar = world.add_object(
            "line", line_tex, [self.bar_x, self.zone[1]], 0.0, role="constraint", geometry=line(LINE_LEN)
        )
        # flat and collision-free, as VIMA-Bench's: markings to respect, not walls to lean on
        world.make_ghost(zone)
        world.make_ghost(bar)
        counts = [(tex, self.n + int(rng.integers(1, 3))), (other_tex, int(rng.integers(1, 3)))]
        layout = self._layout(rng, [t for t, k in counts for _ in range(k)])
        self.swept, self.others = [], []
        for t, xy in layout:
            b = world.add_object("small block", t, xy, float(rng.uniform(0, math.pi / 2)), role="swept")
            (self.swept if t == tex else self.others).append(b)
        world.monitor = self._monitor
        self.prompt = (
            f"Sweep {NUMBERS[self.n]} {{swept_obj}} into {{bounds}} without exceeding {{constraint}}."
        )
        self.placeholders = {
            "swept_obj": Placeholder("object", [SceneObject("small block", tex, np.zeros(2), 0.0)]),
            "bounds": Placeholder(
                "object", [SceneObject("three-sided rectangle", zone_tex, np.zeros(2), 0.0)]
            ),
            "constraint": Placeholder("object", [SceneObject("line", line_tex, np.zeros(2), 0.0)]),
        }

    def _layout(self, rng: np.random.Generator, textures: list[str]) -> list[tuple[str, np.ndarray]]:
        """Block positions beyond the opening (VIMA-Bench's blocks start at x 0.57-0.75); the first N (swept
        texture) start in distinct lanes that lead straight into the zone, and the layout is redrawn until a
        clear plan exists."""
        zy = self.zone[1]
        x_lo, x_hi = self.opening_x() + 0.07, 0.73
        for _ in range(100):
            lanes = rng.choice(LANES, size=self.n, replace=False)
            placed: list[np.ndarray] = []
            ok = True
            for i, _t in enumerate(textures):
                for _ in range(200):
                    if i < self.n:
                        xy = np.array([rng.uniform(x_lo, x_hi), zy + lanes[i] + rng.uniform(-0.004, 0.004)])
                    else:
                        xy = np.array(
                            [rng.uniform(x_lo, x_hi), np.clip(zy + rng.uniform(-0.25, 0.25), -0.45, 0.45)]
                        )
                    if all(np.linalg.norm(xy - q) > 0.07 for q in placed):
                        break
                else:
                    ok = False
                    break
                placed.append(xy)
            if (
                ok
                and len(self._plan_xy({i: q for i, q in enumerate(placed)}, list(range(self.n)), 0)) >= self.n
            ):
                return list(zip(textures, placed, strict=True))
        raise RuntimeError("no block layout with a clear sweeping plan")

    # ------------------------------------------------------------ rules
    def check(self, world: World) -> tuple[bool, bool]:
        n_in = sum(self.inside(world, b) for b in self.swept)
        wrong = any(self.inside(world, b) for b in self.others)
        failure = self.violated or wrong or n_in > self.n or self.any_out_of_workspace(world)
        return (n_in == self.n and not failure), failure

    # ------------------------------------------------------------ oracle
    def plan(self, world: World) -> list[tuple[int, np.ndarray]]:
        done = sum(self.inside(world, b) for b in self.swept)
        pos = {b: world.xy(b).copy() for b in self.swept + self.others}
        return self._plan_xy(pos, [b for b in self.swept if not self.inside(world, b)], done)

    def _plan_xy(
        self, pos: dict[int, np.ndarray], candidates: list[int], done: int
    ) -> list[tuple[int, np.ndarray]]:
        """Greedy straight pushes along -x into the zone, nearest block first, each with a corridor clear of
        other blocks."""
        pos = dict(pos)
        remaining = list(candidates)
        tx = self.slot_x()
        out: list[tuple[int, np.ndarray]] = []
        while done + len(out) < self.n:
            options = []
            for b in remaining:
                dy = pos[b][1] - self.zone[1]
                if abs(dy) > LANE_MAX or pos[b][0] < tx + 0.05:
                    continue
                slot = np.array([tx, pos[b][1]])
                if self._clear(pos, b, slot):
                    options.append((float(pos[b][0]), b, slot))
            if not options:
                break
            _, b, slot = min(options, key=lambda o: o[0])
            out.append((b, slot))
            remaining.remove(b)
            pos[b] = slot
        return out

    @staticmethod
    def _clear(pos: dict[int, np.ndarray], body: int, slot: np.ndarray) -> bool:
        """Nothing within a block's width of the push path, from behind the blade to past the slot."""
        a = pos[body]
        length = float(a[0] - slot[0])
        for other, q in pos.items():
            if other != body and -0.07 <= a[0] - q[0] <= length + 0.03 and abs(q[1] - a[1]) < 0.043:
                return False
        return True

    def oracle_action(self, world: World, rng: np.random.Generator) -> dict | None:
        steps = self.plan(world)
        if not steps:
            return None
        body, slot = steps[0]
        return make_action(world.xy(body), 0.0, slot, 0.0)
