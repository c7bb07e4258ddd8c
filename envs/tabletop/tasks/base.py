"""The task API: one subclass per task family (one file each), parameterised by object/texture pools so the
evaluation levels can swap what a task draws from without touching the task itself."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from envs.tabletop.engine import World, yaw_quat
from envs.tabletop.shapes import BASE_L1, DRAGGED_L1, SHAPES

NOVEL_WORDS: tuple[str, ...] = (
    "dax",
    "blicket",
    "wug",
    "zup",
    "gazer",
    "fep",
    "kobar",
    "tufa",
    "sprock",
    "zorp",
)


@dataclass(frozen=True)
class Pools:
    """What a task may draw from; a level is a choice of pools (e.g. L2 swaps the two texture sets)."""

    dragged_shapes: tuple[str, ...] = DRAGGED_L1
    base_shapes: tuple[str, ...] = BASE_L1
    dragged_textures: tuple[str, ...] = ()
    base_textures: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from envs.tabletop.textures import BASE_TEXTURES_L1, DRAGGED_TEXTURES_L1

        if not self.dragged_textures:
            object.__setattr__(self, "dragged_textures", DRAGGED_TEXTURES_L1)
        if not self.base_textures:
            object.__setattr__(self, "base_textures", BASE_TEXTURES_L1)


@dataclass
class SceneObject:
    """An object as drawn in a scene placeholder (its pose may differ from the live one, e.g. a goal)."""

    shape: str
    texture: str
    xy: np.ndarray
    yaw: float
    scale: float = 1.0


@dataclass
class Placeholder:
    """One ``{name}`` of the prompt: a single object (``objects`` has one entry) or a whole scene."""

    kind: str  # "object" | "scene"
    objects: list[SceneObject] = field(default_factory=list)


def make_action(p0, yaw0: float, p1, yaw1: float) -> dict[str, np.ndarray]:
    """An action dict in the benchmark's format, clipped to the bounds by the env later."""
    return {
        "pose0_position": np.asarray(p0, np.float32),
        "pose0_rotation": np.asarray(yaw_quat(yaw0), np.float32),
        "pose1_position": np.asarray(p1, np.float32),
        "pose1_rotation": np.asarray(yaw_quat(yaw1), np.float32),
    }


class Task:
    """Base class. Subclasses set the class variables and implement ``generate``, ``check`` and
    ``oracle_action``; everything else (prompt assets, meta info, failure on leaving the workspace) is shared.
    """

    name: ClassVar[str] = ""
    ee: ClassVar[str] = "suction"
    oracle_max_steps: ClassVar[int] = 3
    pos_eps: ClassVar[float] = 0.10
    rot_eps: ClassVar[float] = math.radians(15.0)

    def __init__(self, pools: Pools | None = None) -> None:
        self.pools = pools or Pools()
        self.prompt = ""
        self.placeholders: dict[str, Placeholder] = {}
        self.failed = False

    # ---------------------------------------------------------------- to implement
    def generate(self, world: World, rng: np.random.Generator) -> None:
        """Populate the world, set ``prompt``, ``placeholders`` and goals; RuntimeError = resample."""
        raise NotImplementedError

    def check(self, world: World) -> tuple[bool, bool]:
        """(success, failure) after an action has settled."""
        raise NotImplementedError

    def oracle_action(self, world: World, rng: np.random.Generator) -> dict[str, np.ndarray] | None:
        """Next action of the scripted expert from privileged state, or None if it has nothing to do."""
        raise NotImplementedError

    def after_step(self, world: World) -> None:
        """Hook for multi-step bookkeeping; default none."""

    # ---------------------------------------------------------------- shared helpers
    def reset_state(self) -> None:
        self.prompt = ""
        self.placeholders = {}
        self.failed = False

    def any_out_of_workspace(self, world: World) -> bool:
        return any(not world.in_workspace(b) for b in world.movable())

    @staticmethod
    def snapshot(world: World) -> dict[int, np.ndarray]:
        """Movable objects' xy now: order rules compare against it to tell a real move from a no-op."""
        return {b: world.xy(b).copy() for b in world.movable()}

    @staticmethod
    def moved(world: World, snap: dict[int, np.ndarray], eps: float = 0.02) -> list[int]:
        """Objects that moved more than ``eps`` since ``snap`` (a step that moved nothing is not judged)."""
        return [b for b, xy in snap.items() if float(np.linalg.norm(world.xy(b) - xy)) > eps]

    def near(self, world: World, body: int, xy, eps: float | None = None) -> bool:
        return float(np.linalg.norm(world.xy(body) - np.asarray(xy))) <= (
            self.pos_eps if eps is None else eps
        )

    @staticmethod
    def add(
        world: World, rng: np.random.Generator, shape: str, texture: str, role: str, avoid: list | None = None
    ) -> int:
        s = SHAPES[shape]
        xy = world.sample_free_xy(rng, s.radius, avoid=avoid)
        return world.add_object(shape, texture, xy, float(rng.uniform(0, 2 * math.pi)), role=role)

    @staticmethod
    def object_placeholder(world: World, body: int) -> Placeholder:
        o = world.objects[body]
        return Placeholder("object", [SceneObject(o.shape.name, o.texture, world.xy(body), 0.0, o.scale)])

    @staticmethod
    def scene_placeholder(
        world: World, bodies: list[int], poses: dict[int, tuple] | None = None
    ) -> Placeholder:
        objs = []
        for b in bodies:
            o = world.objects[b]
            xy, yaw = poses[b] if poses and b in poses else (world.xy(b), world.pose(b)[1])
            objs.append(SceneObject(o.shape.name, o.texture, np.asarray(xy), float(yaw), o.scale))
        return Placeholder("scene", objs)

    @staticmethod
    def pick_point(world: World, body: int) -> np.ndarray | None:
        """A point where a straight-down suction hits ``body`` first, as close to its centre as possible."""
        centre = world.xy(body)
        o = world.objects[body]
        r = o.shape.radius * o.scale
        grid = np.linspace(-r, r, 13)
        pts = [centre + np.array([dx, dy]) for dx in grid for dy in grid]
        pts.sort(key=lambda q: float(np.linalg.norm(q - centre)))
        hits = world.ray_down(pts)
        for q, (b, _) in zip(pts, hits, strict=True):
            if b == body:
                return q
        return None

    def place_action(
        self, world: World, body: int, target_xy, dyaw: float = 0.0
    ) -> dict[str, np.ndarray] | None:
        """Pick ``body`` and place it so that its centre lands on ``target_xy`` rotated by ``dyaw``."""
        pick = self.pick_point(world, body)
        if pick is None:
            return None
        centre = world.xy(body)
        c, s = math.cos(dyaw), math.sin(dyaw)
        off = pick - centre
        place = np.asarray(target_xy, np.float64) + np.array(
            [c * off[0] - s * off[1], s * off[0] + c * off[1]]
        )
        return make_action(pick, 0.0, place, dyaw)
