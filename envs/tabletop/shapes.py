"""Procedural object shapes (no downloaded assets), each built from boxes, cylinders and extruded convex
polygons, with the rotational symmetry and profile the success checks and reasoning tasks need."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

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


STRIP = 0.04  # VIMA-Bench's boundary strips and constraint bar: 4 cm wide, 1 mm thick, flat on the table
STRIP_H = 0.001


def three_sided_rectangle(depth: float, width: float) -> Shape:
    """The sweep tasks' boundary as VIMA-Bench draws it (its square-template.urdf under yaw -pi/2): three flat
    strips, the closed side towards -x (the robot), open towards +x. ``depth`` (along x) and ``width`` (along
    y) are measured between strip centres, like VIMA-Bench's sampled size; the side strips end at the back
    strip's centre line, as there."""
    h = STRIP_H / 2
    parts = (
        Part("box", (STRIP / 2, width / 2, h), (-depth / 2, 0.0, h)),
        Part("box", (depth / 2, STRIP / 2, h), (0.0, width / 2, h)),
        Part("box", (depth / 2, STRIP / 2, h), (0.0, -width / 2, h)),
    )
    return Shape(
        "three-sided rectangle", parts, TWO_PI, "U", math.hypot(depth, width) / 2 + STRIP, fixed=True
    )


def line(length: float) -> Shape:
    """The sweep tasks' constraint: a flat bar ``STRIP`` wide and ``length`` long along y (VIMA-Bench's
    line-template.urdf under yaw -pi/2)."""
    part = Part("box", (STRIP / 2, length / 2, STRIP_H / 2), (0.0, 0.0, STRIP_H / 2))
    return Shape("line", (part,), math.pi, "line", length / 2, fixed=True)


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
        three_sided_rectangle(0.2, 0.2),
        line(0.25),
    ]
    return {s.name: _scaled(s, VIMA_SCALE.get(s.name, 1.0)) for s in shapes}


# Size of each shape relative to the table, set so that its top-view extent in pixels matches VIMA-Bench's
# (the median larger side of its top-view mask, measured per object on images of the real benchmark:
# docs/tabletop.md, tests/data/vima_scenes).
VIMA_SCALE: dict[str, float] = {
    "block": 1.3,
    "shorter block": 1.4,
    "L-shaped block": 1.45,
    "cross": 1.3,
    "triangle": 1.4,
    "pentagon": 1.4,
    "hexagon": 1.4,
    "diamond": 1.4,
    "round": 1.25,
    "ring": 1.25,
    "star": 1.2,
    "flower": 1.35,
    "heart": 1.5,
    "letter M": 0.9,
    "letter T": 1.1,
    "bowl": 1.3,
    "frame": 0.85,
    "square": 1.25,
    "container": 1.1,
    "pan": 1.2,
}


def _scaled(shape: Shape, k: float) -> Shape:
    """The shape with every length (parts, offsets, footprint radius) multiplied by ``k``."""
    if k == 1.0:
        return shape
    parts = []
    for pt in shape.parts:
        if pt.kind == "prism":
            poly, h = pt.dims
            dims = (tuple((x * k, y * k) for x, y in poly), h * k)
        else:
            dims = tuple(d * k for d in pt.dims)
        parts.append(Part(pt.kind, dims, tuple(v * k for v in pt.pos), pt.yaw))
    return replace(shape, parts=tuple(parts), radius=shape.radius * k)


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
