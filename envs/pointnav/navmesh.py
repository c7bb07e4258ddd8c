"""The navigable area, motion with sliding, and geodesic distances: our stand-in for Habitat's navmesh.

The navigable area is the set of grid cells whose centre is at least the agent radius (plus half a
cell) from any blocked cell, restricted to the largest connected island, as Habitat's generator only
samples there. The agent moves inside the union of those cells, so that union (closed) is our navmesh.
Geodesic distances are exact shortest paths in it, as Habitat's navmesh gives: straight lines that bend
only at obstacle corners, from a visibility graph (envs.pointnav.visgraph); no grid bias, only
floating-point error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from envs.pointnav.scene import AGENT_RADIUS, Scene
from envs.pointnav.visgraph import VisibilityGraph

_BATCH = 16  # candidate corners tested for visibility per numpy call


@dataclass
class GoalField:
    """Shortest-path distance (metres) from every corner of the visibility graph to one goal."""

    goal: np.ndarray
    corner_distance: np.ndarray  # (corners,), inf where unreachable
    exit: np.ndarray  # (corners,) the last corner before the goal on that corner's shortest path, or -1


class NavGrid:
    """Navigability, sliding motion and geodesic queries on a scene's grid (positions are (x, z) metres)."""

    def __init__(self, scene: Scene, agent_radius: float = AGENT_RADIUS) -> None:
        self.scene = scene
        self.res = scene.resolution
        self.agent_radius = agent_radius
        free = ~scene.occupancy
        self.clearance = ndimage.distance_transform_edt(free) * self.res - self.res / 2.0
        nav = self.clearance >= agent_radius - 1e-9
        labels, n = ndimage.label(nav)
        if n == 0:
            raise ValueError(
                f"scene {scene.scene_id!r} has no navigable area for an agent of radius {agent_radius}"
            )
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        self.navigable = labels == int(np.argmax(sizes))
        self.shape = self.navigable.shape
        self._flat = np.flatnonzero(self.navigable)
        self.graph = VisibilityGraph(self.navigable)
        self._memo: tuple | None = None

    # -- cells and positions ---------------------------------------------------------------------------
    def cell_of(self, p: np.ndarray) -> tuple[int, int]:
        """Grid (row, column) holding floor point p = (x, z)."""
        return math.floor(p[1] / self.res), math.floor(p[0] / self.res)

    def center_of(self, flat: int | np.ndarray) -> np.ndarray:
        """Floor point (x, z) at the centre of flat cell index/indices."""
        r, c = np.divmod(np.asarray(flat), self.shape[1])
        return np.stack([(c + 0.5) * self.res, (r + 0.5) * self.res], axis=-1)

    def is_navigable(self, p: np.ndarray) -> bool:
        r, c = self.cell_of(p)
        return 0 <= r < self.shape[0] and 0 <= c < self.shape[1] and bool(self.navigable[r, c])

    def snap(self, p: np.ndarray) -> np.ndarray:
        """The nearest navigable cell centre to p (p itself if it is navigable)."""
        if self.is_navigable(p):
            return np.asarray(p, dtype=np.float64)
        centers = self.center_of(self._flat)
        return centers[int(np.argmin(((centers - np.asarray(p)) ** 2).sum(axis=1)))]

    def sample_navigable(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random navigable point (a random cell, jittered inside it)."""
        flat = int(self._flat[rng.integers(len(self._flat))])
        return self.center_of(flat) + rng.uniform(-0.45, 0.45, size=2) * self.res

    # -- motion ---------------------------------------------------------------------------------------
    def try_step(self, p: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Move from p by delta, sliding along walls as Habitat's `allow_sliding` does.

        The move is cut into sub-steps of a quarter cell; a blocked sub-step keeps whichever axis-aligned
        part of it is free, so the agent glides along the (axis-aligned) wall by the projected amount.
        """
        x, z = float(p[0]), float(p[1])
        n = max(1, math.ceil(math.hypot(float(delta[0]), float(delta[1])) / (self.res * 0.25)))
        sx, sz = float(delta[0]) / n, float(delta[1]) / n
        nav, res = self.navigable, self.res
        h, w = self.shape

        def free(x: float, z: float) -> bool:
            r, c = math.floor(z / res), math.floor(x / res)
            return 0 <= r < h and 0 <= c < w and bool(nav[r, c])

        # Plain floats (same IEEE arithmetic as before, ~20x less overhead than 2-vectors per sub-step).
        for _ in range(n):
            if (sx != 0.0 or sz != 0.0) and free(x + sx, z + sz):
                x, z = x + sx, z + sz
            elif sx != 0.0 and free(x + sx, z):
                x = x + sx
            elif sz != 0.0 and free(x, z + sz):
                z = z + sz
            else:
                break
        return np.array([x, z])

    # -- geodesics ------------------------------------------------------------------------------------
    def _cells(self, p: np.ndarray) -> np.ndarray:
        """Metres -> cell units, the visibility graph's frame, where corners are exact integers.

        Values within 1e-9 cells (5e-11 m) of a grid line are put on it, so a corner given in metres
        (a path point) is tested exactly as the graph's own integer corner.
        """
        c = np.asarray(p, dtype=np.float64) / self.res
        r = np.round(c)
        return np.where(np.abs(c - r) < 1e-9, r, c)

    def goal_field(self, goal: np.ndarray) -> GoalField:
        """Exact corner-to-goal distances for `goal` (snapped onto the navigable area)."""
        goal = self.snap(np.asarray(goal, dtype=np.float64))
        vg = self.graph
        vis = vg.visible_corners(self._cells(goal))
        if len(vis) == 0 or vg.n == 0:
            return GoalField(goal, np.full(vg.n, np.inf), np.full(vg.n, -1, dtype=np.int64))
        leg = np.hypot(*(vg.vertices[vis] - self._cells(goal)).T)
        total = leg[:, None] + vg.dist[vis]  # (visible, corners), cell units
        best = np.argmin(total, axis=0)
        corner_distance = total[best, np.arange(vg.n)] * self.res
        exit_ = np.where(np.isfinite(corner_distance), vis[best], -1)
        return GoalField(goal, corner_distance, exit_)

    def clear(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether the straight segment a-b (metres) stays in the (closed) navigable area."""
        return not bool(self.graph.blocked(self._cells(a), self._cells(b))[0])

    def first_corner(self, p: np.ndarray, field: GoalField) -> tuple[float, int]:
        """(geodesic distance, first corner of the shortest path) from p; corner -1: the goal is in sight.

        The geodesic is min(|p - goal| if the goal is in sight, min over corners v in sight of
        |p - v| + D(v)); scanning corners by that sum, the first one in sight gives the minimum. The
        goal and the best corners are tested in one batch; the last answer is kept (env and oracle ask
        for the same position in one step).
        """
        p = np.asarray(p, dtype=np.float64)
        key = (float(p[0]), float(p[1]))
        memo = self._memo  # holds the field itself, so a new field can never pass for it
        if memo is not None and memo[1] is field and memo[0] == key:
            return memo[2]
        vg = self.graph
        pc = self._cells(p)
        goal = field.goal
        direct = math.hypot(goal[0] - p[0], goal[1] - p[1])
        d = vg.vertices - pc
        f = np.hypot(d[:, 0], d[:, 1]) * self.res + field.corner_distance
        f[~vg.tangent(np.arange(vg.n), d)] = np.inf
        order = np.argsort(f)
        order = order[np.isfinite(f[order])]
        cand = order[: _BATCH - 1]
        ok = ~vg.blocked(pc, np.concatenate([self._cells(goal)[None], vg.vertices[cand]]))
        result = (math.inf, -1)
        if ok[0]:
            result = (direct, -1)
        else:
            s, ok = 0, ok[1:]
            while True:
                if ok.any():
                    v = int(cand[int(np.argmax(ok))])
                    result = (float(f[v]), v)
                    break
                s += len(cand)
                if s >= len(order):
                    break
                cand = order[s : s + _BATCH]
                ok = ~vg.blocked(pc, vg.vertices[cand])
        self._memo = (key, field, result)
        return result

    def geodesic_distance(self, p: np.ndarray, field: GoalField) -> float:
        """Exact shortest-path length from p to the field's goal in the navigable area (inf: unreachable)."""
        return self.first_corner(p, field)[0]

    def route(self, p: np.ndarray, field: GoalField) -> list[int] | None:
        """The corners (graph vertex indices) the shortest path from p bends at; None if unreachable."""
        d, v = self.first_corner(p, field)
        if not math.isfinite(d):
            return None
        out = []
        while v >= 0:
            out.append(v)
            u = int(field.exit[v])
            v = -1 if v == u else int(self.graph.pred[u, v])
        return out

    def path(self, p: np.ndarray, field: GoalField) -> np.ndarray:
        """The shortest path's points (metres), p first and the goal last; just [p] if unreachable."""
        p = np.asarray(p, dtype=np.float64)
        corners = self.route(p, field)
        if corners is None:
            return p[None]
        return np.array([p, *(self.graph.vertices[corners] * self.res), field.goal])
