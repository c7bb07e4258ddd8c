"""The navigable area, motion with sliding, and geodesic distances: our stand-in for Habitat's navmesh.

The navigable area is the set of grid cells whose centre is at least the agent radius (plus half a
cell) from any blocked cell, restricted to the largest connected island, as Habitat's generator only
samples there. Geodesic distances come from Dijkstra on a 16-connected grid graph (straight moves,
diagonals and knight moves, each allowed only if every cell it crosses is navigable), whose worst-case
overestimate of a straight line is about 2.7%; a clear line of sight to the goal gives the exact
Euclidean distance instead, so distances near the goal (where success is decided) are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from envs.pointnav.scene import AGENT_RADIUS, Scene

# (dr, dc, cells crossed besides the end cell) for the 16 moves; the sign is applied later.
_MOVES: list[tuple[int, int, tuple[tuple[int, int], ...]]] = [
    (0, 1, ()),
    (1, 0, ()),
    (1, 1, ((0, 1), (1, 0))),
    (1, -1, ((0, -1), (1, 0))),
    (1, 2, ((0, 1), (1, 1))),
    (2, 1, ((1, 0), (1, 1))),
    (1, -2, ((0, -1), (1, -1))),
    (2, -1, ((1, 0), (1, -1))),
]


@dataclass
class GoalField:
    """Geodesic distances (metres) from every navigable cell to one goal, and the next cell towards it."""

    goal: np.ndarray
    distance: np.ndarray  # (H, W), inf where unreachable
    next_cell: np.ndarray  # (H, W) flat index of the next cell on a shortest path, -1 at goal / unreachable


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
        self._cells = np.flatnonzero(self.navigable)
        self._graph = self._build_graph()

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
        centers = self.center_of(self._cells)
        return centers[int(np.argmin(((centers - np.asarray(p)) ** 2).sum(axis=1)))]

    def sample_navigable(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random navigable point (a random cell, jittered inside it)."""
        flat = int(self._cells[rng.integers(len(self._cells))])
        return self.center_of(flat) + rng.uniform(-0.45, 0.45, size=2) * self.res

    def line_of_sight(self, a: np.ndarray, b: np.ndarray, min_clearance: float | None = None) -> bool:
        """Whether the straight segment a-b stays on navigable cells (with at least `min_clearance`)."""
        ax, az, bx, bz = float(a[0]), float(a[1]), float(b[0]), float(b[1])
        n = max(2, math.ceil(math.hypot(bx - ax, bz - az) / (self.res * 0.5)) + 1)
        t = np.arange(n) / (n - 1)
        r = np.floor((az + t * (bz - az)) / self.res).astype(np.int64)
        c = np.floor((ax + t * (bx - ax)) / self.res).astype(np.int64)
        h, w = self.shape
        if min(r[0], r[-1]) < 0 or min(c[0], c[-1]) < 0 or max(r[0], r[-1]) >= h or max(c[0], c[-1]) >= w:
            return False  # a straight segment's extreme cells are its end cells
        if not self.navigable[r, c].all():
            return False
        return min_clearance is None or bool((self.clearance[r, c] >= min_clearance).all())

    # -- motion ---------------------------------------------------------------------------------------
    def try_step(self, p: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Move from p by delta, sliding along walls as Habitat's `allow_sliding` does.

        The move is cut into sub-steps of a quarter cell; a blocked sub-step keeps whichever axis-aligned
        part of it is free, so the agent glides along the (axis-aligned) wall by the projected amount.
        """
        p = np.asarray(p, dtype=np.float64).copy()
        delta = np.asarray(delta, dtype=np.float64)
        n = max(1, math.ceil(float(np.hypot(*delta)) / (self.res * 0.25)))
        step = delta / n
        for _ in range(n):
            for cand in (step, np.array([step[0], 0.0]), np.array([0.0, step[1]])):
                if (cand != 0).any() and self.is_navigable(p + cand):
                    p = p + cand
                    break
            else:
                break
        return p

    # -- geodesics ------------------------------------------------------------------------------------
    def _build_graph(self) -> csr_matrix:
        h, w = self.shape
        nav = self.navigable
        rows, cols, weights = [], [], []
        rr, cc = np.nonzero(nav)
        for dr, dc, crossed in _MOVES:
            r2, c2 = rr + dr, cc + dc
            ok = (r2 >= 0) & (r2 < h) & (c2 >= 0) & (c2 < w)
            r1_, c1_, r2_, c2_ = rr[ok], cc[ok], r2[ok], c2[ok]
            keep = nav[r2_, c2_]
            for xr, xc in crossed:
                rx, cx = r1_ + xr, c1_ + xc
                inside = (rx >= 0) & (rx < h) & (cx >= 0) & (cx < w)
                keep &= inside & nav[np.clip(rx, 0, h - 1), np.clip(cx, 0, w - 1)]
            a = r1_[keep] * w + c1_[keep]
            b = r2_[keep] * w + c2_[keep]
            length = math.hypot(dr, dc) * self.res
            rows += [a, b]
            cols += [b, a]
            weights += [np.full(len(a), length), np.full(len(a), length)]
        index = np.full(h * w, -1, dtype=np.int64)
        index[self._cells] = np.arange(len(self._cells))
        r = index[np.concatenate(rows)]
        c = index[np.concatenate(cols)]
        n = len(self._cells)
        return csr_matrix((np.concatenate(weights), (r, c)), shape=(n, n))

    def goal_field(self, goal: np.ndarray) -> GoalField:
        """Shortest-path distances and next-cell pointers to `goal` (snapped onto the navigable area)."""
        goal = np.asarray(goal, dtype=np.float64)
        snapped = self.snap(goal)
        r, c = self.cell_of(snapped)
        g = int(np.searchsorted(self._cells, r * self.shape[1] + c))
        dist, pred = dijkstra(self._graph, directed=False, indices=g, return_predecessors=True)
        # Cell centre to goal point: the goal lies inside its cell, so add the exact last leg.
        offset = float(np.hypot(*(self.center_of(self._cells[g]) - goal)))
        full = np.full(self.shape[0] * self.shape[1], np.inf)
        full[self._cells] = dist + offset
        nxt = np.full(self.shape[0] * self.shape[1], -1, dtype=np.int64)
        valid = pred >= 0
        nxt[self._cells[valid]] = self._cells[pred[valid]]
        return GoalField(goal, full.reshape(self.shape), nxt.reshape(self.shape))

    def geodesic_distance(self, p: np.ndarray, field: GoalField) -> float:
        """Geodesic distance from p to the field's goal (inf if unreachable, as Habitat returns).

        Exact (Euclidean) with a clear line of sight to the goal; otherwise the best of p's own cell and
        its 8 neighbours, each as the straight leg to its centre plus that centre's field value.
        """
        if self.line_of_sight(p, field.goal):
            return math.hypot(field.goal[0] - p[0], field.goal[1] - p[1])
        r, c = self.cell_of(p)
        h, w = self.shape
        nav, dist = self.navigable, field.distance
        best = math.inf
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                rr, cc = r + dr, c + dc
                if not (0 <= rr < h and 0 <= cc < w) or not math.isfinite(dist[rr, cc]):
                    continue
                # A diagonal leg may clip one of the two side cells; both must be navigable.
                if dr and dc and not (nav[r, cc] and nav[rr, c]):
                    continue
                leg = math.hypot((cc + 0.5) * self.res - p[0], (rr + 0.5) * self.res - p[1])
                best = min(best, leg + float(dist[rr, cc]))
        return best

    def path_cells(self, p: np.ndarray, field: GoalField, max_cells: int = 400) -> np.ndarray:
        """Flat indices of the shortest path's cells from p's cell towards the goal (at most max_cells)."""
        r, c = self.cell_of(p)
        cur = r * self.shape[1] + c
        flat_next = field.next_cell.ravel()
        out = [cur]
        while len(out) < max_cells:
            cur = int(flat_next[cur])
            if cur < 0:
                break
            out.append(cur)
        return np.array(out, dtype=np.int64)
