"""Procedural object shapes (no downloaded assets), each built from boxes, cylinders and extruded convex
polygons, with the rotational symmetry and profile the success checks and reasoning tasks need."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class Part:
    """One rigid piece of a shape, in the object's frame (metres, before scaling)."""

    kind: str  # "box" (dims = half extents), "cyl" (dims = radius, height), "prism" (dims = polygon, height)
    dims: tuple
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw: float = 0.0


@dataclass(frozen=True)
class Shape:
    """An object type of the pool.

    ``symmetry`` is the yaw period in radians (2*pi: none, 0: continuous, e.g. bowls and rings), used by
    rotation checks modulo symmetry. ``radius`` is the footprint radius used for collision-free sampling.
    ``fixed`` marks receptacles that are static like the benchmark's base objects.
    """

    name: str
    parts: tuple[Part, ...]
    symmetry: float
    profile: str
    radius: float
    fixed: bool = False
    aliases: tuple[str, ...] = field(default_factory=tuple)


def _regular_polygon(n: int, r: float, phase: float = 0.0) -> tuple[tuple[float, float], ...]:
    return tuple(
        (r * math.cos(phase + TWO_PI * i / n), r * math.sin(phase + TWO_PI * i / n)) for i in range(n)
    )


def _stroke(x0: float, y0: float, x1: float, y1: float, w: float, h: float) -> Part:
    """A bar between two points: the building block of letters."""
    length = math.hypot(x1 - x0, y1 - y0)
    return Part(
        "box",
        (length / 2 + w / 2, w / 2, h / 2),
        ((x0 + x1) / 2, (y0 + y1) / 2, h / 2),
        math.atan2(y1 - y0, x1 - x0),
    )


def _ring_parts(r: float, w: float, h: float, n: int = 12, z: float = 0.0) -> tuple[Part, ...]:
    seg = 2 * r * math.tan(math.pi / n) + 0.002
    return tuple(
        Part(
            "box",
            (w / 2, seg / 2, h / 2),
            (r * math.cos(TWO_PI * i / n), r * math.sin(TWO_PI * i / n), z + h / 2),
            TWO_PI * i / n,
        )
        for i in range(n)
    )


def _letter(strokes: list[tuple[float, float, float, float]], size: float = 0.08, h: float = 0.02) -> tuple:
    """Letters drawn on a unit square (x up the letter, y to the right), scaled to ``size``."""
    w = 0.16 * size
    return tuple(
        _stroke(size * (a - 0.5), size * (b - 0.5), size * (c - 0.5), size * (d - 0.5), w, h)
        for a, b, c, d in strokes
    )


def _box(hx: float, hy: float, hz: float) -> tuple[Part, ...]:
    return (Part("box", (hx, hy, hz), (0.0, 0.0, hz)),)


def _prism(poly: tuple, h: float) -> tuple[Part, ...]:
    return (Part("prism", (poly, h), (0.0, 0.0, 0.0)),)


def _walls(hx: float, hy: float, t: float, h: float, sides: str, base: bool) -> tuple[Part, ...]:
    """Rectangular receptacles: ``sides`` picks walls among n(+x), s(-x), e(-y), w(+y)."""
    parts: list[Part] = []
    if base:
        parts.append(Part("box", (hx, hy, 0.002), (0.0, 0.0, 0.002)))
    if "n" in sides:
        parts.append(Part("box", (t / 2, hy, h / 2), (hx - t / 2, 0.0, h / 2)))
    if "s" in sides:
        parts.append(Part("box", (t / 2, hy, h / 2), (-hx + t / 2, 0.0, h / 2)))
    if "w" in sides:
        parts.append(Part("box", (hx, t / 2, h / 2), (0.0, hy - t / 2, h / 2)))
    if "e" in sides:
        parts.append(Part("box", (hx, t / 2, h / 2), (0.0, -hy + t / 2, h / 2)))
    return tuple(parts)


def _star(r_out: float, r_in: float, h: float) -> tuple[Part, ...]:
    core = Part("prism", (_regular_polygon(5, r_in, math.pi / 5), h))
    tips = []
    for i in range(5):
        a = TWO_PI * i / 5
        b0, b1 = a - math.pi / 5, a + math.pi / 5
        tri = (
            (r_out * math.cos(a), r_out * math.sin(a)),
            (r_in * math.cos(b0), r_in * math.sin(b0)),
            (r_in * math.cos(b1), r_in * math.sin(b1)),
        )
        tips.append(Part("prism", (tri, h)))
    return (core, *tips)


def _build_pool() -> dict[str, Shape]:
    h = 0.02
    shapes = [
        # dragged objects
        Shape("block", _box(0.025, 0.025, 0.02), math.pi / 2, "square", 0.04),
        Shape("small block", _box(0.015, 0.015, 0.015), math.pi / 2, "square", 0.025),
        Shape("shorter block", _box(0.025, 0.025, 0.012), math.pi / 2, "square", 0.04),
        Shape(
            "L-shaped block",
            (
                Part("box", (0.035, 0.012, h / 2), (0.0, -0.013, h / 2)),
                Part("box", (0.012, 0.025, h / 2), (-0.023, 0.012, h / 2)),
            ),
            TWO_PI,
            "L",
            0.05,
        ),
        Shape(
            "cross",
            (
                Part("box", (0.04, 0.012, h / 2), (0, 0, h / 2)),
                Part("box", (0.012, 0.04, h / 2), (0, 0, h / 2)),
            ),
            math.pi / 2,
            "cross",
            0.045,
        ),
        Shape("triangle", _prism(_regular_polygon(3, 0.045), h), TWO_PI / 3, "triangle", 0.05),
        Shape("pentagon", _prism(_regular_polygon(5, 0.04), h), TWO_PI / 5, "pentagon", 0.045),
        Shape("hexagon", _prism(_regular_polygon(6, 0.04), h), TWO_PI / 6, "hexagon", 0.045),
        Shape(
            "diamond",
            _prism(((0.045, 0.0), (0.0, 0.028), (-0.045, 0.0), (0.0, -0.028)), h),
            math.pi,
            "diamond",
            0.05,
        ),
        Shape("round", (Part("cyl", (0.035, h), (0, 0, h / 2)),), 0.0, "circle", 0.04),
        Shape("ring", _ring_parts(0.032, 0.012, h), 0.0, "circle", 0.045),
        Shape("star", _star(0.045, 0.02, h), TWO_PI / 5, "star", 0.05),
        Shape(
            "flower",
            (
                Part("cyl", (0.015, h), (0, 0, h / 2)),
                *(
                    Part(
                        "cyl",
                        (0.014, h),
                        (0.024 * math.cos(TWO_PI * i / 5), 0.024 * math.sin(TWO_PI * i / 5), h / 2),
                    )
                    for i in range(5)
                ),
            ),
            TWO_PI / 5,
            "flower",
            0.045,
        ),
        Shape(
            "heart",
            (
                Part("cyl", (0.018, h), (0.01, 0.016, h / 2)),
                Part("cyl", (0.018, h), (0.01, -0.016, h / 2)),
                Part("box", (0.022, 0.022, h / 2), (-0.008, 0.0, h / 2), math.pi / 4),
            ),
            TWO_PI,
            "heart",
            0.045,
        ),
        Shape(
            "letter A", _letter([(0, 0, 1, 0.5), (0, 1, 1, 0.5), (0.4, 0.25, 0.4, 0.75)]), TWO_PI, "A", 0.05
        ),
        Shape(
            "letter E",
            _letter([(0, 0.1, 1, 0.1), (1, 0.1, 1, 0.9), (0.5, 0.1, 0.5, 0.8), (0, 0.1, 0, 0.9)]),
            TWO_PI,
            "E",
            0.05,
        ),
        Shape(
            "letter G",
            _letter(
                [
                    (0.1, 0.1, 0.9, 0.1),
                    (1, 0.15, 1, 0.9),
                    (0, 0.15, 0, 0.9),
                    (0, 0.9, 0.45, 0.9),
                    (0.45, 0.55, 0.45, 0.9),
                ]
            ),
            TWO_PI,
            "G",
            0.05,
        ),
        Shape(
            "letter M",
            _letter([(0, 0, 1, 0), (1, 0, 0.4, 0.5), (0.4, 0.5, 1, 1), (1, 1, 0, 1)]),
            TWO_PI,
            "M",
            0.05,
        ),
        Shape(
            "letter R",
            _letter(
                [
                    (0, 0.1, 1, 0.1),
                    (1, 0.1, 1, 0.8),
                    (1, 0.8, 0.5, 0.8),
                    (0.5, 0.1, 0.5, 0.8),
                    (0.5, 0.4, 0, 0.9),
                ]
            ),
            TWO_PI,
            "R",
            0.05,
        ),
        Shape("letter T", _letter([(1, 0, 1, 1), (1, 0.5, 0, 0.5)]), TWO_PI, "T", 0.05),
        Shape("letter V", _letter([(1, 0, 0, 0.5), (0, 0.5, 1, 1)]), TWO_PI, "V", 0.05),
        # base objects (static receptacles)
        Shape(
            "bowl",
            (Part("cyl", (0.06, 0.004), (0, 0, 0.002)), *_ring_parts(0.07, 0.012, 0.035, 14)),
            0.0,
            "circle",
            0.085,
            fixed=True,
        ),
        Shape(
            "frame",
            _walls(0.08, 0.08, 0.014, 0.012, "nsew", base=False),
            math.pi / 2,
            "square",
            0.11,
            fixed=True,
        ),
        Shape(
            "square",
            _walls(0.075, 0.075, 0.008, 0.004, "nsew", base=False),
            math.pi / 2,
            "square",
            0.1,
            fixed=True,
        ),
        Shape(
            "container",
            _walls(0.075, 0.075, 0.012, 0.04, "nsew", base=True),
            math.pi / 2,
            "square",
            0.1,
            fixed=True,
        ),
        Shape(
            "pallet",
            (
                Part("box", (0.08, 0.08, 0.006), (0, 0, 0.006)),
                *(Part("box", (0.08, 0.012, 0.004), (0, dy, 0.014)) for dy in (-0.06, -0.02, 0.02, 0.06)),
            ),
            math.pi,
            "square",
            0.11,
            fixed=True,
        ),
        Shape(
            "pan",
            (
                Part("cyl", (0.07, 0.006), (0, 0, 0.003)),
                *_ring_parts(0.07, 0.01, 0.025, 14),
                Part("box", (0.05, 0.01, 0.006), (0.12, 0, 0.02)),
            ),
            TWO_PI,
            "pan",
            0.13,
            fixed=True,
        ),
        Shape(
            "three-sided rectangle",
            _walls(0.06, 0.1, 0.01, 0.02, "new", base=False),
            TWO_PI,
            "U",
            0.12,
            fixed=True,
        ),
        Shape(
            "line", (Part("box", (0.004, 0.11, 0.0005), (0, 0, 0.0005)),), math.pi, "line", 0.11, fixed=True
        ),
    ]
    return {s.name: s for s in shapes}


SHAPES: dict[str, Shape] = _build_pool()

DRAGGED_L1: tuple[str, ...] = (
    "letter A",
    "letter E",
    "letter G",
    "letter M",
    "letter T",
    "letter V",
    "block",
    "cross",
    "triangle",
    "flower",
    "heart",
    "ring",
    "pentagon",
    "L-shaped block",
)
BASE_L1: tuple[str, ...] = ("bowl", "frame", "container", "square")
DRAGGED_NOVEL: tuple[str, ...] = ("letter R", "diamond", "hexagon", "round", "star")
BASE_NOVEL: tuple[str, ...] = ("pallet", "pan")


def yaw_error(actual: float, target: float, symmetry: float) -> float:
    """Smallest absolute yaw difference modulo the shape's symmetry period (0 means any yaw matches)."""
    if symmetry <= 1e-9:
        return 0.0
    d = (actual - target) % symmetry
    return min(d, symmetry - d)
