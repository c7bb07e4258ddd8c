"""Exact shortest paths in a union of grid cells: a reduced visibility graph over its reflex corners.

The navigable area is a union of square cells, i.e. a rectilinear polygon (with holes). A shortest
path between two points of such a polygon is a polyline that bends only at reflex corners of the free
space (grid vertices where a blocked cell pokes into free space), and only on segments that are tangent
to the obstacle there (the segment's line does not enter the blocked cell on either side). So the
exact geodesic is: the straight line if it is clear, else min over corners v visible from p of
|p - v| + D(v), where D is the corner-to-goal distance from Dijkstra on that graph. No grid bias: the
only error is floating point (coordinates are integers in cell units, so corner-to-corner tests are exact).

Segments are tested against the blocked area as axis-aligned rectangles (open interiors: touching a
corner or running along an edge is allowed, as in the closed free area); a segment running along the
line where two blocked rectangles meet is caught by per-grid-line tables.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path

from envs.pointnav.scene import merge_rectangles

_CHUNK = 1 << 21  # segment x rectangle pairs tested per numpy batch (bounds memory)
_DENSE = 1 << 15  # up to this many segment x rectangle pairs, test them all without pruning


def _slab(
    ox: np.ndarray,
    oz: np.ndarray,
    dx: np.ndarray,
    dz: np.ndarray,
    x0: np.ndarray,
    z0: np.ndarray,
    x1: np.ndarray,
    z1: np.ndarray,
    exact: bool,
) -> np.ndarray:
    """Whether segments o + t d, t in [0, 1], overlap open rectangles over a positive length (broadcast).

    The fast path divides by d (a zero component gives +-inf or nan; callers redo those with `exact`,
    where a segment parallel to an axis is inside a slab only if it lies strictly within it).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        tx0, tx1 = (x0 - ox) / dx, (x1 - ox) / dx
        tz0, tz1 = (z0 - oz) / dz, (z1 - oz) / dz
    lox, hix = np.minimum(tx0, tx1), np.maximum(tx0, tx1)
    loz, hiz = np.minimum(tz0, tz1), np.maximum(tz0, tz1)
    if exact:
        inx = (ox > x0) & (ox < x1)
        inz = (oz > z0) & (oz < z1)
        px, pz = dx == 0.0, dz == 0.0
        lox = np.where(px, np.where(inx, -np.inf, np.inf), lox)
        hix = np.where(px, np.where(inx, np.inf, -np.inf), hix)
        loz = np.where(pz, np.where(inz, -np.inf, np.inf), loz)
        hiz = np.where(pz, np.where(inz, np.inf, -np.inf), hiz)
    tmin = np.maximum(np.maximum(lox, loz), 0.0)
    tmax = np.minimum(np.minimum(hix, hiz), 1.0)
    return tmin < tmax


class VisibilityGraph:
    """Corners, their all-pairs shortest paths, and segment tests, in cell units (x = column, z = row)."""

    def __init__(self, navigable: np.ndarray) -> None:
        nav = np.asarray(navigable, dtype=bool)
        h, w = nav.shape
        pad = np.zeros((h + 2, w + 2), dtype=bool)
        pad[1:-1, 1:-1] = nav
        # The 4 cells around grid vertex (i, j) (z = i, x = j): top-left, top-right, bottom-left, -right.
        tl, tr, bl, br = pad[:-1, :-1], pad[:-1, 1:], pad[1:, :-1], pad[1:, 1:]
        count = tl.astype(np.int8) + tr + bl + br
        reflex = count == 3
        pinch = (count == 2) & (tl == br)  # two free cells touching at a corner only
        vi, vj = np.nonzero(reflex | pinch)
        self.vertices = np.stack([vj, vi], axis=1).astype(np.float64)  # (x, z)
        # Direction (sx, sz) from the vertex into its one blocked cell (0, 0 for pinch points: no pruning).
        sx = np.where(~tl | ~bl, -1, 1)[vi, vj] * reflex[vi, vj]
        sz = np.where(~tl | ~tr, -1, 1)[vi, vj] * reflex[vi, vj]
        self.blocked_dir = np.stack([sx, sz], axis=1).astype(np.float64)
        rects = merge_rectangles(~nav)
        r = np.array(rects, dtype=np.float64).reshape(-1, 4)
        self.rects = np.stack([r[:, 1], r[:, 0], r[:, 3], r[:, 2]], axis=1)  # x0, z0, x1, z1
        # Grid lines with blocked cells on both sides: x = j between columns j-1 and j, z = i likewise.
        both_x = ~pad[1:-1, :-1] & ~pad[1:-1, 1:]  # (h, w + 1): row i, vertical line x = j
        both_z = ~pad[:-1, 1:-1] & ~pad[1:, 1:-1]  # (h + 1, w): horizontal line z = i, column j
        zx, zz = np.zeros((1, w + 1), np.int32), np.zeros((h + 1, 1), np.int32)
        self._cum_x = np.concatenate([zx, np.cumsum(both_x, 0, dtype=np.int32)])
        self._cum_z = np.concatenate([zz, np.cumsum(both_z, 1, dtype=np.int32)], 1)
        self.shape = (h, w)
        self._build()

    # -- segment tests --------------------------------------------------------------------------------
    def blocked(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """For segments a[k]-b[k] (N, 2), whether each passes through the blocked area's interior."""
        a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
        b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
        d = b - a  # a single start point broadcasts against many ends without a copy
        n = len(d)
        if n * len(self.rects) <= _DENSE:
            out = self._blocked_rects(a, d)
        else:  # many segments (building the graph): test only the rectangles each one's bounding box meets
            out = self._blocked_pruned(np.broadcast_to(a, d.shape), d)
        parallel = (d == 0.0).any(axis=1)
        if parallel.any():  # axis-parallel segments: open-slab rule, and grid lines between two blocks
            idx = np.flatnonzero(parallel)
            a = np.broadcast_to(a, d.shape)
            b = np.broadcast_to(b, d.shape)
            out[idx] = self._blocked_rects(a[idx], d[idx], exact=True) | self._blocked_lines(a[idx], b[idx])
        return out

    def _blocked_rects(self, o: np.ndarray, d: np.ndarray, exact: bool = False) -> np.ndarray:
        """Segments o + t d (every one against every rectangle) that cross a rectangle's interior."""
        x0, z0, x1, z1 = (self.rects[:, k] for k in range(4))
        hit = _slab(o[:, 0:1], o[:, 1:2], d[:, 0:1], d[:, 1:2], x0, z0, x1, z1, exact)
        return hit.any(axis=1)

    def _blocked_pruned(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        """As `_blocked_rects`, for many segments: slab tests only where bounding boxes overlap.

        A segment can only cross an open rectangle's interior if its bounding box overlaps that interior
        (strict inequalities), so the pruning never drops a hit.
        """
        x0, z0, x1, z1 = (self.rects[:, k] for k in range(4))
        e = o + d
        lo, hi = np.minimum(o, e), np.maximum(o, e)
        out = np.zeros(len(o), dtype=bool)
        step = max(1, _CHUNK // max(1, len(self.rects)))
        for s in range(0, len(o), step):
            lo_s, hi_s = lo[s : s + step], hi[s : s + step]
            near = (lo_s[:, 0:1] < x1) & (hi_s[:, 0:1] > x0) & (lo_s[:, 1:2] < z1) & (hi_s[:, 1:2] > z0)
            si, ri = np.nonzero(near)
            si = si + s
            hit = _slab(o[si, 0], o[si, 1], d[si, 0], d[si, 1], x0[ri], z0[ri], x1[ri], z1[ri], False)
            out[si[hit]] = True
        return out

    def _blocked_lines(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Axis-parallel segments on a grid line, blocked where both neighbouring cells are."""
        out = np.zeros(len(a), dtype=bool)
        h, w = self.shape
        for axis, cum, limit in ((0, self._cum_x, w), (1, self._cum_z, h)):
            on = (a[:, axis] == b[:, axis]) & (a[:, axis] == np.round(a[:, axis]))
            on &= (a[:, axis] >= 0) & (a[:, axis] <= limit)
            if not on.any():
                continue
            k = a[on, axis].astype(np.int64)
            other = 1 - axis
            lo = np.clip(np.floor(np.minimum(a[on, other], b[on, other])), 0, cum.shape[axis] - 1)
            hi = np.clip(np.ceil(np.maximum(a[on, other], b[on, other])), 0, cum.shape[axis] - 1)
            lo, hi = lo.astype(np.int64), hi.astype(np.int64)
            # vertical line x = k: counts over rows; horizontal line z = k: over columns
            n = cum[hi, k] - cum[lo, k] if axis == 0 else cum[k, hi] - cum[k, lo]
            out[on] = n > 0
        return out

    def tangent(self, v: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Whether direction d[k] at corner v[k] keeps the segment's line outside the blocked cell."""
        s = self.blocked_dir[v]
        return d[..., 0] * s[..., 0] * d[..., 1] * s[..., 1] <= 0.0

    # -- graph ----------------------------------------------------------------------------------------
    def _build(self) -> None:
        n = len(self.vertices)
        self.n = n
        if n == 0:
            self.dist = np.zeros((0, 0))
            self.pred = np.zeros((0, 0), dtype=np.int64)
            self.num_edges = 0
            return
        i, j = np.triu_indices(n, k=1)
        d = self.vertices[j] - self.vertices[i]
        keep = self.tangent(i, d) & self.tangent(j, d)
        i, j = i[keep], j[keep]
        ok = ~self.blocked(self.vertices[i], self.vertices[j])
        i, j = i[ok], j[ok]
        length = np.hypot(*(self.vertices[j] - self.vertices[i]).T)
        g = csr_matrix((length, (i, j)), shape=(n, n))
        self.num_edges = len(i)
        self.dist, self.pred = shortest_path(g, method="D", directed=False, return_predecessors=True)

    def visible_corners(self, p: np.ndarray) -> np.ndarray:
        """Indices of the corners reachable from point p by a clear segment tangent at the corner."""
        if self.n == 0:
            return np.zeros(0, dtype=np.int64)
        d = self.vertices - p
        idx = np.flatnonzero(self.tangent(np.arange(self.n), d))
        return idx[~self.blocked(np.broadcast_to(p, (len(idx), 2)), self.vertices[idx])]
