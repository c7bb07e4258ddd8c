"""Indoor floor plans: procedural houses from a seed, or a plan read from an occupancy image.

A scene is an occupancy grid (what blocks the agent) plus the boxes and floor patches that draw it.
Both come from the same cells, so what the camera sees is exactly what the agent bumps into.
Houses are laid out by binary space partitioning: rooms, sometimes a corridor, one door per dividing
wall (which keeps every room reachable), and furniture that is rejected if it would cut the plan apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

RESOLUTION = 0.05  # metres per grid cell
WALL_HEIGHT = 2.5
AGENT_RADIUS = 0.1

_FLOOR_PALETTE = [
    (0.55, 0.38, 0.22),
    (0.66, 0.50, 0.33),
    (0.45, 0.30, 0.18),
    (0.72, 0.72, 0.70),
    (0.35, 0.40, 0.45),
    (0.60, 0.55, 0.48),
    (0.30, 0.32, 0.36),
    (0.78, 0.70, 0.58),
    (0.42, 0.48, 0.36),
    (0.62, 0.40, 0.36),
]
_WALL_PALETTE = [
    (0.92, 0.90, 0.85),
    (0.80, 0.84, 0.88),
    (0.88, 0.80, 0.70),
    (0.75, 0.82, 0.74),
    (0.86, 0.74, 0.74),
    (0.70, 0.72, 0.80),
    (0.95, 0.93, 0.80),
    (0.82, 0.82, 0.82),
]
_FURNITURE_PALETTE = [
    (0.40, 0.25, 0.15),
    (0.20, 0.30, 0.55),
    (0.60, 0.20, 0.20),
    (0.25, 0.45, 0.30),
    (0.15, 0.15, 0.15),
    (0.85, 0.85, 0.80),
    (0.70, 0.55, 0.30),
    (0.50, 0.35, 0.55),
]


@dataclass(frozen=True)
class Box:
    """An axis-aligned block on the floor, in metres: (x0, z0)-(x1, z1), from y=0 up to `height`."""

    x0: float
    z0: float
    x1: float
    z1: float
    height: float
    color: tuple[float, float, float]


@dataclass(frozen=True)
class FloorPatch:
    """A coloured rectangle of floor (a room's material)."""

    x0: float
    z0: float
    x1: float
    z1: float
    color: tuple[float, float, float]


@dataclass
class Scene:
    """A floor plan: `occupancy[i, j]` is True where cell (row i = z, column j = x) blocks the agent."""

    scene_id: str
    occupancy: np.ndarray
    resolution: float = RESOLUTION
    boxes: list[Box] = field(default_factory=list)
    floors: list[FloorPatch] = field(default_factory=list)
    wall_height: float = WALL_HEIGHT
    ceiling_color: tuple[float, float, float] = (0.95, 0.95, 0.93)

    @property
    def size(self) -> tuple[float, float]:
        """Extent (x, z) in metres."""
        return self.occupancy.shape[1] * self.resolution, self.occupancy.shape[0] * self.resolution


def merge_rectangles(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Cover the True cells of `mask` with few rectangles (r0, c0, r1, c1), end-exclusive, greedily.

    Fewer rectangles means fewer triangles for the software renderer, which is where the time goes.
    """
    todo = mask.copy()
    rects = []
    rows, cols = todo.shape
    for r in range(rows):
        c = 0
        while c < cols:
            if not todo[r, c]:
                c += 1
                continue
            c1 = c
            while c1 < cols and todo[r, c1]:
                c1 += 1
            r1 = r + 1
            while r1 < rows and todo[r1, c:c1].all():
                r1 += 1
            todo[r:r1, c:c1] = False
            rects.append((r, c, r1, c1))
            c = c1
    return rects


def _cells_to_m(r0: int, c0: int, r1: int, c1: int, res: float) -> tuple[float, float, float, float]:
    return c0 * res, r0 * res, c1 * res, r1 * res


@dataclass
class _Wall:
    """A dividing wall found during partitioning; `axis` 0 = runs along x (fixed row), 1 = along z."""

    axis: int
    fixed0: int
    fixed1: int
    lo: int
    hi: int


def _partition(
    rng: np.random.Generator,
    rect: tuple[int, int, int, int],
    walls: list[_Wall],
    rooms: list[tuple[int, int, int, int]],
    min_room: int,
    thick: int,
    depth: int,
    allow_corridor: bool,
) -> None:
    """Split `rect` (r0, c0, r1, c1, interior cells) recursively, recording walls and leaf rooms."""
    r0, c0, r1, c1 = rect
    h, w = r1 - r0, c1 - c0
    can_h = h >= 2 * min_room + thick
    can_w = w >= 2 * min_room + thick
    area_m2 = h * w * RESOLUTION**2
    if (not can_h and not can_w) or (depth >= 2 and area_m2 < 22 and rng.random() < 0.6):
        rooms.append(rect)
        return
    axis = 0 if (can_h and (not can_w or h > w or (h == w and rng.random() < 0.5))) else 1
    length = h if axis == 0 else w
    corridor = round(1.3 / RESOLUTION)
    use_corridor = allow_corridor and length >= 2 * min_room + 2 * thick + corridor and rng.random() < 0.6
    lo_len, hi_len = (r0, r1) if axis == 0 else (c0, c1)
    if use_corridor:
        split = int(rng.integers(lo_len + min_room, hi_len - min_room - corridor - 2 * thick + 1))
        cut_a, cut_b = split, split + thick + corridor
        pieces = [(lo_len, cut_a), (cut_a + thick, cut_b), (cut_b + thick, hi_len)]
        cuts = [cut_a, cut_b]
    else:
        split = int(rng.integers(lo_len + min_room, hi_len - min_room - thick + 1))
        pieces = [(lo_len, split), (split + thick, hi_len)]
        cuts = [split]
    for cut in cuts:
        if axis == 0:
            walls.append(_Wall(0, cut, cut + thick, c0, c1))
        else:
            walls.append(_Wall(1, cut, cut + thick, r0, r1))
    for k, (a, b) in enumerate(pieces):
        sub = (a, c0, b, c1) if axis == 0 else (r0, a, r1, b)
        if use_corridor and k == 1:
            rooms.append(sub)  # the corridor stays one long room
            continue
        _partition(rng, sub, walls, rooms, min_room, thick, depth + 1, allow_corridor=False)


def _carve_door(rng: np.random.Generator, occ: np.ndarray, wall: _Wall, door: int, thick: int) -> bool:
    """Open a door through `wall` where both sides are free, so the two halves it split are joined."""
    candidates = []
    for start in range(wall.lo + 2, wall.hi - door - 1):
        if wall.axis == 0:
            before = occ[wall.fixed0 - 1, start : start + door]
            after = occ[wall.fixed1, start : start + door]
            inside = occ[wall.fixed0 : wall.fixed1, start - 1 : start + door + 1]
        else:
            before = occ[start : start + door, wall.fixed0 - 1]
            after = occ[start : start + door, wall.fixed1]
            inside = occ[start - 1 : start + door + 1, wall.fixed0 : wall.fixed1]
        # The wall must be a plain wall there (no crossing wall inside the doorway) and open on both sides.
        if not before.any() and not after.any() and inside.all():
            candidates.append(start)
    if not candidates:
        return False
    start = int(rng.choice(candidates))
    if wall.axis == 0:
        occ[wall.fixed0 : wall.fixed1, start : start + door] = False
    else:
        occ[start : start + door, wall.fixed0 : wall.fixed1] = False
    return True


def _navigable(occ: np.ndarray, res: float, radius: float) -> np.ndarray:
    clearance = ndimage.distance_transform_edt(~occ) * res
    return clearance >= radius + res / 2.0 + 1e-9


def _components(nav: np.ndarray) -> int:
    labels, n = ndimage.label(nav)
    if n == 0:
        return 0
    sizes = np.bincount(labels.ravel())[1:]
    return int((sizes >= 40).sum())


def procedural_scene(seed: int, resolution: float = RESOLUTION) -> Scene:
    """A house of 50-150 m2 with several rooms, maybe a corridor, doors and furniture, from `seed`."""
    if resolution != RESOLUTION:
        raise ValueError(f"procedural scenes are built at resolution {RESOLUTION} m, got {resolution}")
    if int(seed) < 0:
        raise ValueError(f"scene seed must be >= 0, got {seed}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x9E3779B9]))
    thick = 3  # 0.15 m walls
    width_m = float(rng.uniform(8.0, 14.0))
    depth_m = float(rng.uniform(6.0, 11.0))
    w = round(width_m / resolution) + 2 * thick
    h = round(depth_m / resolution) + 2 * thick
    occ = np.zeros((h, w), dtype=bool)
    occ[:thick, :] = occ[-thick:, :] = occ[:, :thick] = occ[:, -thick:] = True
    walls: list[_Wall] = []
    rooms: list[tuple[int, int, int, int]] = []
    min_room = round(2.4 / resolution)
    _partition(
        rng, (thick, thick, h - thick, w - thick), walls, rooms, min_room, thick, 0, allow_corridor=True
    )
    for wall in walls:
        if wall.axis == 0:
            occ[wall.fixed0 : wall.fixed1, wall.lo : wall.hi] = True
        else:
            occ[wall.lo : wall.hi, wall.fixed0 : wall.fixed1] = True
    door = round(float(rng.uniform(0.8, 1.0)) / resolution)
    for wall in walls:
        if not _carve_door(rng, occ, wall, door, thick):
            _carve_door(rng, occ, wall, round(0.7 / resolution), thick)
    wall_mask = occ.copy()
    # Furniture: a few boxes per room, kept only if the plan stays in one piece.
    furniture: list[tuple[int, int, int, int, float, tuple[float, float, float]]] = []
    base = _components(_navigable(occ, resolution, AGENT_RADIUS))
    for r0, c0, r1, c1 in rooms:
        for _ in range(int(rng.integers(0, 4))):
            fh = round(float(rng.uniform(0.4, 1.4)) / resolution)
            fw = round(float(rng.uniform(0.4, 1.4)) / resolution)
            if r1 - r0 <= fh + 2 or c1 - c0 <= fw + 2:
                continue
            if rng.random() < 0.6:  # against a wall, like most furniture
                fr = r0 if rng.random() < 0.5 else r1 - fh
                fc = int(rng.integers(c0, c1 - fw))
            else:
                fr = int(rng.integers(r0 + 10, max(r0 + 11, r1 - fh - 10)))
                fc = int(rng.integers(c0 + 10, max(c0 + 11, c1 - fw - 10)))
            fr, fc = min(fr, r1 - fh), min(fc, c1 - fw)
            trial = occ.copy()
            trial[fr : fr + fh, fc : fc + fw] = True
            if _components(_navigable(trial, resolution, AGENT_RADIUS)) != base:
                continue
            occ = trial
            height = float(rng.uniform(0.45, 2.0))
            color = _FURNITURE_PALETTE[int(rng.integers(len(_FURNITURE_PALETTE)))]
            furniture.append((fr, fc, fr + fh, fc + fw, height, color))
    wall_color = _WALL_PALETTE[int(rng.integers(len(_WALL_PALETTE)))]
    boxes = []
    for k, (r0, c0, r1, c1) in enumerate(merge_rectangles(wall_mask)):
        shade = 0.9 + 0.1 * ((k * 7) % 3) / 2.0
        color = tuple(min(1.0, ch * shade) for ch in wall_color)
        boxes.append(Box(*_cells_to_m(r0, c0, r1, c1, resolution), WALL_HEIGHT, color))  # type: ignore[arg-type]
    for r0, c0, r1, c1, height, color in furniture:
        boxes.append(Box(*_cells_to_m(r0, c0, r1, c1, resolution), height, color))
    floors = [
        FloorPatch(
            *_cells_to_m(r0, c0, r1, c1, resolution), _FLOOR_PALETTE[int(rng.integers(len(_FLOOR_PALETTE)))]
        )
        for r0, c0, r1, c1 in rooms
    ]
    floors.insert(0, FloorPatch(0.0, 0.0, w * resolution, h * resolution, (0.5, 0.5, 0.5)))
    return Scene(f"procedural:{int(seed)}", occ, resolution, boxes, floors)


def scene_from_occupancy(
    occupancy: np.ndarray | str | Path,
    resolution: float = RESOLUTION,
    seed: int = 0,
    scene_id: str | None = None,
) -> Scene:
    """A scene from a floor-plan image: dark pixels (< 128) or True cells block, one pixel per cell.

    Accepts a 2-D array or a path to a `.npy` or binary/ASCII PGM (`P2`/`P5`) file. The border is
    closed with a wall so the agent cannot leave the plan.
    """
    source = None
    if isinstance(occupancy, str | Path):
        source = str(occupancy)
        occupancy = read_occupancy_image(occupancy)
    arr = np.asarray(occupancy)
    if arr.ndim != 2 or min(arr.shape) < 8:
        raise ValueError(f"occupancy image must be 2-D and at least 8x8 cells, got shape {arr.shape}")
    occ = arr.astype(bool) if arr.dtype == bool else arr < 128
    occ = np.pad(occ, 1, constant_values=True)
    rng = np.random.default_rng(seed)
    wall_color = _WALL_PALETTE[int(rng.integers(len(_WALL_PALETTE)))]
    boxes = [Box(*_cells_to_m(*rect, resolution), WALL_HEIGHT, wall_color) for rect in merge_rectangles(occ)]
    h, w = occ.shape
    floors = [FloorPatch(0.0, 0.0, w * resolution, h * resolution, _FLOOR_PALETTE[int(rng.integers(10))])]
    return Scene(scene_id or f"occupancy:{source or 'array'}", occ, resolution, boxes, floors)


def read_occupancy_image(path: str | Path) -> np.ndarray:
    """Read a grey-level plan from `.npy` or PGM (P2 text / P5 binary), as uint8 or bool."""
    path = Path(path)
    if path.suffix == ".npy":
        return np.load(path)
    data = path.read_bytes()
    tokens = re.findall(rb"\S+", re.sub(rb"#[^\n]*", b"", data[:512]))
    if len(tokens) < 4 or tokens[0] not in (b"P2", b"P5"):
        raise ValueError(f"{path}: not a PGM (P2/P5) or .npy occupancy image")
    w, h, maxval = int(tokens[1]), int(tokens[2]), int(tokens[3])
    if not 0 < maxval < 256:
        raise ValueError(f"{path}: only 8-bit PGM images are supported (maxval {maxval})")
    if tokens[0] == b"P2":
        values = re.findall(rb"\S+", re.sub(rb"#[^\n]*", b"", data))[4:]
        pixels = np.array([int(v) for v in values[: w * h]], dtype=np.float64)
    else:
        pixels = np.frombuffer(data[len(data) - w * h :], dtype=np.uint8).astype(np.float64)
    if pixels.size != w * h:
        raise ValueError(f"{path}: PGM says {w}x{h} but holds {pixels.size} pixels")
    return (pixels.reshape(h, w) * (255.0 / maxval)).astype(np.uint8)


_PROCEDURAL = re.compile(r"^procedural:(-?\d+)$")


def scene_from_id(scene_id: str) -> Scene:
    """Rebuild a scene named in an episode file (`procedural:<seed>` or `occupancy:<path>`)."""
    m = _PROCEDURAL.match(scene_id)
    if m:
        return procedural_scene(int(m.group(1)))
    if scene_id.startswith("occupancy:"):
        return scene_from_occupancy(scene_id[len("occupancy:") :], scene_id=scene_id)
    raise ValueError(
        f"scene_id {scene_id!r} is not one of ours ('procedural:<seed>' or 'occupancy:<path>'); "
        "Habitat scenes (Gibson, HM3D, ...) need habitat-sim: use envs.habitat.HabitatPointNavEnv"
    )
