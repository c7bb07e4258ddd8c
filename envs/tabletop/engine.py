"""The pybullet world: one headless DIRECT client per env, rebuilt from scratch on every reset so body ids
and physics are identical for identical seeds (plane 0, table 1, robot parts next, then task objects)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pybullet as p

from envs.tabletop.shapes import SHAPES, Part, Shape
from envs.tabletop.spaces import POSITION_HIGH, POSITION_LOW
from envs.tabletop.textures import TEXTURES, texture_file

SIM_HZ = 240
# rendered under our light as VIMA-Bench's scenes measure (docs/tabletop.md): table (47, 47, 47), background
# (239, 239, 239)
TABLE_COLOR = (0.2, 0.2, 0.2, 1.0)
PLANE_COLOR = (1.0, 1.0, 1.0, 1.0)
RAY_MASK = 1  # rays (suction "descend", support heights) see collision group 1; robot parts use group 2
DENSITY_MASS = 0.1  # kg per dragged object; base objects are static like the benchmark's "fixed" category


@dataclass
class ObjectInfo:
    """What the world knows about one task object (also exported as ``meta_info['obj_id_to_info']``)."""

    obj_id: int
    shape: Shape
    texture: str
    scale: float = 1.0
    role: str = "distractor"
    novel_name: str | None = None

    def to_meta(self) -> dict:
        tex = TEXTURES[self.texture]
        return {
            "obj_name": self.shape.name,
            "obj_symmetry": self.shape.symmetry,
            "obj_profile": self.shape.profile,
            "obj_fixed": self.shape.fixed,
            "obj_scale": self.scale,
            "obj_novel_name": self.novel_name,
            "texture_name": self.texture,
            "texture_pattern": tex.pattern,
            "texture_color_value": np.asarray(tex.colors[0], np.float32) / 255.0,
        }


def yaw_quat(yaw: float) -> tuple[float, float, float, float]:
    return (0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0))


def quat_yaw(q) -> float:
    x, y, z, w = (float(v) for v in q)
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def _ccw(poly) -> list[tuple[float, float]]:
    cx = sum(v[0] for v in poly) / len(poly)
    cy = sum(v[1] for v in poly) / len(poly)
    return sorted(poly, key=lambda v: math.atan2(v[1] - cy, v[0] - cx))


@dataclass
class World:
    """A pybullet client plus the task objects living in it."""

    client: int = -1
    objects: dict[int, ObjectInfo] = field(default_factory=dict)
    robot_ids: list[int] = field(default_factory=list)
    monitor: Callable[[World], None] | None = None  # task hook called every few sim steps during actions
    _textures: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.client < 0:
            self.client = p.connect(p.DIRECT)

    # ---------------------------------------------------------------- lifecycle
    def reset(self, with_table: bool = True) -> None:
        """Empty the simulation and rebuild plane (id 0) and table (id 1)."""
        c = self.client
        p.resetSimulation(physicsClientId=c)
        p.setPhysicsEngineParameter(
            fixedTimeStep=1.0 / SIM_HZ,
            numSolverIterations=30,
            deterministicOverlappingPairs=1,
            physicsClientId=c,
        )
        p.setGravity(0, 0, -9.8, physicsClientId=c)
        self.objects = {}
        self.robot_ids = []
        self.monitor = None
        self._textures = {}
        if with_table:
            plane_col = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=c)
            plane_vis = p.createVisualShape(
                p.GEOM_BOX, halfExtents=[4, 4, 0.001], rgbaColor=PLANE_COLOR, physicsClientId=c
            )
            p.createMultiBody(0, plane_col, plane_vis, [0, 0, -0.003], physicsClientId=c)
            half = [
                0.5 * (POSITION_HIGH[0] - POSITION_LOW[0]),
                0.5 * (POSITION_HIGH[1] - POSITION_LOW[1]),
                0.001,
            ]
            tcol = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=c)
            tvis = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=TABLE_COLOR, physicsClientId=c)
            p.createMultiBody(0, tcol, tvis, [0.5, 0.0, -0.001], physicsClientId=c)

    def close(self) -> None:
        if self.client >= 0:
            with contextlib.suppress(p.error):
                p.disconnect(physicsClientId=self.client)
            self.client = -1

    # ---------------------------------------------------------------- objects
    def _part_shapes(self, part: Part, scale: float, rgba) -> tuple[int, int]:
        c = self.client
        if part.kind == "box":
            he = [d * scale for d in part.dims]
            col = p.createCollisionShape(p.GEOM_BOX, halfExtents=he, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=he, rgbaColor=rgba, physicsClientId=c)
        elif part.kind == "cyl":
            r, h = part.dims[0] * scale, part.dims[1] * scale
            col = p.createCollisionShape(p.GEOM_CYLINDER, radius=r, height=h, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_CYLINDER, radius=r, length=h, rgbaColor=rgba, physicsClientId=c)
        elif part.kind == "prism":
            poly, h = _ccw(part.dims[0]), part.dims[1] * scale
            n = len(poly)
            verts = [[x * scale, y * scale, z] for z in (0.0, h) for x, y in poly]
            idx: list[int] = []
            for i in range(1, n - 1):
                idx += [0, i + 1, i, n, n + i, n + i + 1]
            for i in range(n):
                j = (i + 1) % n
                idx += [i, j, n + j, i, n + j, n + i]
            span = max(max(abs(x), abs(y)) for x, y in poly) * 2 + 1e-9
            uvs = [[0.5 + x / span, 0.5 + y / span] for _ in (0, 1) for x, y in poly]
            col = p.createCollisionShape(p.GEOM_MESH, vertices=verts, physicsClientId=c)
            vis = p.createVisualShape(
                p.GEOM_MESH, vertices=verts, indices=idx, uvs=uvs, rgbaColor=rgba, physicsClientId=c
            )
        else:
            raise ValueError(f"unknown part kind {part.kind!r}")
        return col, vis

    def texture_id(self, name: str) -> int:
        if name not in self._textures:
            self._textures[name] = p.loadTexture(texture_file(name), physicsClientId=self.client)
        return self._textures[name]

    def add_object(
        self,
        shape_name: str,
        texture: str,
        xy,
        yaw: float,
        *,
        scale: float = 1.0,
        role: str = "distractor",
        z: float = 0.0,
        fixed: bool | None = None,
        geometry: Shape | None = None,
    ) -> int:
        """Build the shape from its parts: every part is a fixed link of a tiny collision-free base, so parts
        can sit anywhere in the object frame (whose origin is the footprint centre at the object's bottom).
        ``geometry`` replaces the pool's shape of that name (a task-sized boundary or bar, as VIMA-Bench sizes
        them per task)."""
        c = self.client
        shape = SHAPES[shape_name] if geometry is None else geometry
        tex = TEXTURES[texture]
        solid = tex.pattern == "solid"
        rgba = [*(np.asarray(tex.colors[0]) / 255.0).tolist(), 1.0] if solid else [1, 1, 1, 1]
        is_fixed = shape.fixed if fixed is None else fixed
        parts = shape.parts
        n = len(parts)
        cols, viss = zip(*(self._part_shapes(pt, scale, rgba) for pt in parts), strict=True)
        mass = 0.0 if is_fixed else DENSITY_MASS / n
        base_col = p.createCollisionShape(p.GEOM_SPHERE, radius=0.001, physicsClientId=c)
        body = p.createMultiBody(
            baseMass=mass,
            baseCollisionShapeIndex=base_col,
            baseVisualShapeIndex=-1,
            basePosition=[float(xy[0]), float(xy[1]), z + 0.0005],
            baseOrientation=yaw_quat(yaw),
            linkMasses=[mass] * n,
            linkCollisionShapeIndices=list(cols),
            linkVisualShapeIndices=list(viss),
            linkPositions=[[v * scale for v in pt.pos] for pt in parts],
            linkOrientations=[list(yaw_quat(pt.yaw)) for pt in parts],
            linkInertialFramePositions=[[0, 0, 0]] * n,
            linkInertialFrameOrientations=[[0, 0, 0, 1]] * n,
            linkParentIndices=[0] * n,
            linkJointTypes=[p.JOINT_FIXED] * n,
            linkJointAxis=[[0, 0, 1]] * n,
            physicsClientId=c,
        )
        p.setCollisionFilterGroupMask(body, -1, 0, 0, physicsClientId=c)
        for link in range(n):
            p.changeDynamics(
                body,
                link,
                lateralFriction=0.6,
                spinningFriction=0.001,
                rollingFriction=0.0001,
                physicsClientId=c,
            )
            if not solid:
                p.changeVisualShape(body, link, textureUniqueId=self.texture_id(texture), physicsClientId=c)
        self.objects[body] = ObjectInfo(body, shape, texture, scale, role)
        return body

    def make_ghost(self, body: int) -> None:
        """Take a body out of every collision (VIMA-Bench's boundaries and constraint bars have no collision
        geometry: blocks slide over them)."""
        c = self.client
        for link in range(-1, p.getNumJoints(body, physicsClientId=c)):
            p.setCollisionFilterGroupMask(body, link, 0, 0, physicsClientId=c)

    def add_invisible_marker(self) -> int:
        """Invisible, collision-free body: keeps robot ids where the benchmark has them (kinematic mode)."""
        c = self.client
        col = p.createCollisionShape(p.GEOM_SPHERE, radius=0.001, physicsClientId=c)
        body = p.createMultiBody(0, col, -1, [0, 0, -1.0], physicsClientId=c)
        p.setCollisionFilterGroupMask(body, -1, 0, 0, physicsClientId=c)
        self.robot_ids.append(body)
        return body

    # ---------------------------------------------------------------- state
    def pose(self, body: int) -> tuple[np.ndarray, float]:
        pos, orn = p.getBasePositionAndOrientation(body, physicsClientId=self.client)
        return np.asarray(pos), quat_yaw(orn)

    def xy(self, body: int) -> np.ndarray:
        return self.pose(body)[0][:2]

    def set_pose(self, body: int, xyz, yaw: float) -> None:
        p.resetBasePositionAndOrientation(
            body, [float(v) for v in xyz], yaw_quat(yaw), physicsClientId=self.client
        )
        p.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0], physicsClientId=self.client)

    def aabb(self, body: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
        for link in range(-1, p.getNumJoints(body, physicsClientId=self.client)):
            a, b = p.getAABB(body, link, physicsClientId=self.client)
            lo, hi = np.minimum(lo, a), np.maximum(hi, b)
        return lo, hi

    def movable(self) -> list[int]:
        return [i for i, o in self.objects.items() if not o.shape.fixed]

    def step(self, n: int) -> None:
        for _ in range(n):
            p.stepSimulation(physicsClientId=self.client)

    def settle(self, max_steps: int = 480, check_every: int = 12, tol: float = 5e-3) -> None:
        """Step until every movable object is (nearly) still, as the benchmark does after each action."""
        bodies = self.movable()
        done = 0
        while done < max_steps:
            self.step(check_every)
            done += check_every
            if self.monitor is not None:
                self.monitor(self)
            still = True
            for b in bodies:
                v, w = p.getBaseVelocity(b, physicsClientId=self.client)
                if np.linalg.norm(v) > tol or np.linalg.norm(w) > 10 * tol:
                    still = False
                    break
            if still:
                return

    def ray_down(self, xys, z_top: float = 1.0) -> list[tuple[int, float]]:
        """(body id, hit height) straight down at each xy; (-1, 0) if nothing is hit."""
        starts = [[float(x), float(y), z_top] for x, y in xys]
        ends = [[float(x), float(y), -0.5] for x, y in xys]
        res = p.rayTestBatch(starts, ends, collisionFilterMask=RAY_MASK, physicsClientId=self.client)
        return [(r[0], r[3][2]) if r[0] >= 0 else (-1, 0.0) for r in res]

    def in_workspace(self, body: int) -> bool:
        xy = self.xy(body)
        return bool(np.all(xy >= POSITION_LOW) and np.all(xy <= POSITION_HIGH))

    def sample_free_xy(
        self,
        rng: np.random.Generator,
        radius: float,
        margin: float = 0.02,
        tries: int = 200,
        avoid: list[tuple[np.ndarray, float]] | None = None,
    ) -> np.ndarray:
        """Uniform xy inside the workspace whose footprint does not overlap existing objects."""
        lo = POSITION_LOW + radius + margin
        hi = POSITION_HIGH - radius - margin
        others = [(self.xy(b), o.shape.radius * o.scale) for b, o in self.objects.items()] + list(avoid or [])
        for _ in range(tries):
            xy = rng.uniform(lo, hi)
            if all(np.linalg.norm(xy - oxy) > radius + r + 0.01 for oxy, r in others):
                return xy
        raise RuntimeError("no free placement found")
