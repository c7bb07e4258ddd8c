"""Exact geodesics (visibility graph over the navigable cells) and the oracle walking no shorter than them."""

import itertools
import math

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from envs.pointnav.env import PointNavEnv
from envs.pointnav.episodes import generate_episode
from envs.pointnav.navmesh import NavGrid
from envs.pointnav.oracle import Oracle
from envs.pointnav.scene import procedural_scene, scene_from_occupancy
from envs.pointnav.visgraph import VisibilityGraph


def test_geodesic_around_a_wall_end_is_straight_legs_between_its_corners():
    occ = np.zeros((60, 80), dtype=bool)
    occ[:40, 39:41] = True  # a wall from the top border down to z = 2.0 m (before the 1-cell border pad)
    nav = NavGrid(scene_from_occupancy(occ))
    # After the pad the wall fills columns 40-41, rows 0-40. A cell is navigable when its centre is at
    # least 2.5 cells from every wall cell's centre, so the blocked area ends in a step: columns 38-43
    # down to row 41, columns 39-42 in row 42, nothing below.
    assert not nav.navigable[41, 38:44].any() and nav.navigable[41, [37, 44]].all()
    assert not nav.navigable[42, 39:43].any() and nav.navigable[42, [38, 43]].all()
    assert nav.navigable[43, 30:50].all()
    # The shortest path from left to right of the wall bends at the step's four convex corners.
    corners = np.array([[38, 42], [39, 43], [43, 43], [44, 42]]) * nav.res
    a, b = np.array([1.0, 0.5]), np.array([3.0, 0.5])
    expected = np.array([a, *corners, b])
    length = float(np.sum(np.hypot(*np.diff(expected, axis=0).T)))
    assert nav.geodesic_distance(a, nav.goal_field(b)) == pytest.approx(length, abs=1e-9)
    np.testing.assert_allclose(nav.path(a, nav.goal_field(b)), expected, atol=1e-12)
    assert nav.geodesic_distance(a, nav.goal_field(a + np.array([0.0, 1.0]))) == pytest.approx(1.0, abs=1e-12)


def test_a_segment_along_the_seam_of_two_blocks_is_blocked():
    nav = np.ones((10, 10), dtype=bool)
    nav[3:6, 2:5] = False  # block A: x in [2, 5]
    nav[3:6, 5:8] = False  # block B, beside it: the line x = 5 runs between them
    nav[0:3, 0:10] = True
    vg = VisibilityGraph(nav)
    assert vg.blocked(np.array([[5.0, 3.0]]), np.array([[5.0, 6.0]]))[0]  # along the seam
    assert not vg.blocked(np.array([[2.0, 3.0]]), np.array([[8.0, 3.0]]))[0]  # along the blocks' edge
    assert not vg.blocked(np.array([[1.0, 2.0]]), np.array([[2.0, 3.0]]))[0]  # touching a corner
    assert vg.blocked(np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]]))[0]  # through block A


def test_pruned_segment_tests_agree_with_testing_every_rectangle():
    vg = NavGrid(procedural_scene(5)).graph
    rng = np.random.default_rng(1)
    h, w = vg.shape
    a = rng.uniform(0, [w, h], (3000, 2))
    b = rng.uniform(0, [w, h], (3000, 2))
    a[:200], b[:200] = np.round(a[:200]), np.round(b[:200])  # corner-to-corner, as the graph build has
    dense = vg._blocked_rects(a, b - a)
    assert 0.2 < dense.mean() < 0.95
    np.testing.assert_array_equal(vg._blocked_pruned(a, b - a), dense)


def _grid_path_length(nav: NavGrid, a: np.ndarray, b: np.ndarray) -> float:
    """An independent upper bound: 8-connected Dijkstra between cell centres (diagonals need both sides)."""
    h, w = nav.shape
    idx = np.arange(h * w).reshape(h, w)
    ok = nav.navigable
    rows, cols, lens = [], [], []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        r0, r1 = slice(0, h - dr), slice(dr, h)
        c0, c1 = (slice(0, w - dc), slice(dc, w)) if dc >= 0 else (slice(-dc, w), slice(0, w + dc))
        m = ok[r0, c0] & ok[r1, c1]
        if dr and dc:
            m &= ok[r0, c1] & ok[r1, c0]
        rows.append(idx[r0, c0][m])
        cols.append(idx[r1, c1][m])
        lens.append(np.full(int(m.sum()), math.hypot(dr, dc) * nav.res))
    g = csr_matrix((np.concatenate(lens), (np.concatenate(rows), np.concatenate(cols))), shape=(h * w, h * w))
    ra, ca = nav.cell_of(a)
    rb, cb = nav.cell_of(b)
    d = dijkstra(g, directed=False, indices=ra * w + ca)[rb * w + cb]
    return float(d + math.dist(a, nav.center_of(ra * w + ca)) + math.dist(b, nav.center_of(rb * w + cb)))


def test_geodesics_are_never_longer_than_a_grid_path_nor_shorter_than_their_own_path():
    nav = NavGrid(procedural_scene(7))
    rng = np.random.default_rng(0)
    for _ in range(6):
        a, b = nav.sample_navigable(rng), nav.sample_navigable(rng)
        field = nav.goal_field(b)
        d = nav.geodesic_distance(a, field)
        grid = _grid_path_length(nav, a, b)
        # 8-connected grid paths overstate by at most 8.3% (plus the two half-cell legs): a wrong
        # (too short or too long) geodesic falls outside this window.
        assert grid / 1.083 - 2 * nav.res <= d <= grid + 1e-9
        path = nav.path(a, field)
        assert np.sum(np.hypot(*np.diff(path, axis=0).T)) == pytest.approx(d, abs=1e-9)
        assert all(nav.clear(p, q) for p, q in itertools.pairwise(path))


def test_oracle_never_walks_less_than_the_shortest_path():
    """Over 200 episodes the oracle succeeds and its path P is never below L - d_T (no SPL capping).

    Habitat's generator rules, with goals at most 6 m away (instead of 30) to keep the test short; the
    ratio rule still makes most episodes bend around walls.
    """
    rng = np.random.default_rng(3)
    episodes = []
    for s in range(4):
        nav = NavGrid(procedural_scene(s))
        episodes += [generate_episode(nav, rng, len(episodes), far=6.0) for _ in range(50)]
    env = PointNavEnv(width=4, height=4, episodes=episodes)
    slack, bent = [], 0
    for i in range(len(episodes)):
        env.reset(seed=i)
        oracle = Oracle(env)
        start = env.metrics.start_distance
        bent += len(env.nav.route(env.agent_position, env.goal_field)) > 0
        while True:
            _, terminated, truncated, info = env.transition(oracle.act())
            if terminated or truncated:
                break
        assert info["success"], f"episode {i}: oracle failed"
        slack.append(env.metrics.walked - (start - env.metrics.distance_to_goal))
    assert bent > 150  # most shortest paths turn corners
    assert min(slack) >= -1e-9
