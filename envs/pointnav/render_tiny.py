"""The former renderer, kept as the reference for envs.pointnav.render's ray caster (tests, benchmark).

RGB and depth from pybullet's headless TinyRenderer (DIRECT mode, one physics client per renderer).

Walls and furniture are uploaded as a few triangle meshes, one per colour, with only the faces a
camera on the floor can see, wound so TinyRenderer's back-face culling skips the far side of every wall,
and cut into tiles of at most 1.5 m. TinyRenderer costs about 140 ns per shaded pixel here (one quad
filling a 128x128 frame: 2.3 ms), so the floor and ceiling, two planes, are not rasterized but filled
in exactly by envs.pointnav.planes (`analytic_planes=False` rasterizes them too, for comparison).
A 2-D occlusion-culling pass was tried and gained nothing once back faces were culled.
World mapping: Habitat (x, y-up, z) -> pybullet (x, -z, y).
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict

import numpy as np
import pybullet as pb

from envs.pointnav.planes import PlaneFiller
from envs.pointnav.render import check_camera
from envs.pointnav.scene import Scene

SENSOR_HEIGHT = 1.25  # Habitat's RGB/depth sensors sit 1.25 m above the agent's feet
MIN_DEPTH = 0.0
MAX_DEPTH = 10.0
_NEAR = 0.02
_FAR = 30.0


TILE = 1.5  # longest quad edge (m): keeps triangles that cross the camera plane small


def _quad(v: list[list[float]], out_v: list[list[float]], out_i: list[int], tile: float = TILE) -> None:
    """Append quad v0-v1-v2-v3 as a grid of tiles no longer than `tile` on a side."""
    c = np.asarray(v, dtype=np.float64)
    nu = max(1, math.ceil(float(np.linalg.norm(c[1] - c[0])) / tile))
    nv = max(1, math.ceil(float(np.linalg.norm(c[3] - c[0])) / tile))
    u = np.linspace(0.0, 1.0, nu + 1)[:, None, None]
    w = np.linspace(0.0, 1.0, nv + 1)[None, :, None]
    grid = (1 - u) * (1 - w) * c[0] + u * (1 - w) * c[1] + u * w * c[2] + (1 - u) * w * c[3]
    n = len(out_v)
    out_v.extend(grid.reshape(-1, 3).tolist())
    for i in range(nu):
        for j in range(nv):
            a, b = n + i * (nv + 1) + j, n + (i + 1) * (nv + 1) + j
            out_i.extend([a, b, b + 1, a, b + 1, a + 1])


def _pb(x: float, z: float, y: float) -> list[float]:
    """Habitat (x, y, z) -> pybullet (x, -z, y)."""
    return [x, -z, y]


class TinyRendererReference:
    """The former renderer (pybullet TinyRenderer), kept as the reference the fast one is checked against."""

    def __init__(
        self,
        scene: Scene,
        width: int = 256,
        height: int = 256,
        hfov_deg: float = 90.0,
        analytic_planes: bool = True,
    ) -> None:
        self.analytic_planes = analytic_planes
        self.width, self.height, self.hfov = check_camera(width, height, hfov_deg)
        vfov = 2.0 * math.atan(math.tan(self.hfov / 2.0) * self.height / self.width)
        self._proj = pb.computeProjectionMatrixFOV(math.degrees(vfov), self.width / self.height, _NEAR, _FAR)
        self._client = pb.connect(pb.DIRECT)
        self.scene_id: str | None = None
        self.load(scene)

    def load(self, scene: Scene) -> None:
        """Replace the uploaded scene (same physics client, so an env keeps exactly one)."""
        pb.resetSimulation(physicsClientId=self._client)
        self.scene_id = scene.scene_id
        self._planes = PlaneFiller(scene, self.width, self.height, self.hfov, SENSOR_HEIGHT)
        groups: dict[tuple, tuple[list[list[float]], list[int]]] = defaultdict(lambda: ([], []))
        # Faces are wound counter-clockwise seen from outside: TinyRenderer culls back faces, so the far
        # side of every wall costs nothing. Boxes come first: near walls drawn first reject floor pixels.
        for b in scene.boxes:
            v, i = groups[(0.0, *b.color)]
            x0, z0, x1, z1, h = b.x0, b.z0, b.x1, b.z1, b.height
            _quad([_pb(x1, z0, 0), _pb(x0, z0, 0), _pb(x0, z0, h), _pb(x1, z0, h)], v, i)
            _quad([_pb(x0, z1, 0), _pb(x1, z1, 0), _pb(x1, z1, h), _pb(x0, z1, h)], v, i)
            _quad([_pb(x0, z0, 0), _pb(x0, z1, 0), _pb(x0, z1, h), _pb(x0, z0, h)], v, i)
            _quad([_pb(x1, z1, 0), _pb(x1, z0, 0), _pb(x1, z0, h), _pb(x1, z1, h)], v, i)
            if h < scene.wall_height:  # furniture tops are visible; wall tops touch the ceiling
                _quad([_pb(x0, z0, h), _pb(x0, z1, h), _pb(x1, z1, h), _pb(x1, z0, h)], v, i)
        for k, f in enumerate([] if self.analytic_planes else scene.floors):
            v, i = groups[(1.0 + k, *f.color)]
            y = -0.02 if k == 0 else 0.0  # the base floor (under doorways) lies just below the room patches
            _quad([_pb(f.x0, f.z0, y), _pb(f.x0, f.z1, y), _pb(f.x1, f.z1, y), _pb(f.x1, f.z0, y)], v, i)
        sx, sz = scene.size
        hc = scene.wall_height
        if not self.analytic_planes:
            v, i = groups[(1e6, *scene.ceiling_color)]
            _quad([_pb(0, 0, hc), _pb(sx, 0, hc), _pb(sx, sz, hc), _pb(0, sz, hc)], v, i)
        for key in sorted(groups, key=lambda k: k[0]):
            verts, idx = groups[key]
            shape = pb.createVisualShape(
                pb.GEOM_MESH,
                vertices=verts,
                indices=idx,
                rgbaColor=[*key[1:4], 1.0],
                physicsClientId=self._client,
            )
            pb.createMultiBody(baseMass=0, baseVisualShapeIndex=shape, physicsClientId=self._client)

    def render(self, position_xz: np.ndarray, yaw: float) -> tuple[np.ndarray, np.ndarray]:
        """RGB (H, W, 3) uint8 and depth (H, W, 1) float32: z-depth / 10 m in [0, 1], as Habitat has it."""
        x, z = float(position_xz[0]), float(position_xz[1])
        fx, fz = -math.sin(yaw), -math.cos(yaw)
        eye = _pb(x, z, SENSOR_HEIGHT)
        target = _pb(x + fx, z + fz, SENSOR_HEIGHT)
        view = pb.computeViewMatrix(eye, target, [0.0, 0.0, 1.0])
        _, _, rgba, zbuf, _ = pb.getCameraImage(
            self.width,
            self.height,
            view,
            self._proj,
            shadow=0,
            lightDirection=[0.3, -0.4, 1.0],
            renderer=pb.ER_TINY_RENDERER,
            flags=pb.ER_NO_SEGMENTATION_MASK,
            physicsClientId=self._client,
        )
        rgba = np.asarray(rgba, dtype=np.uint8).reshape(self.height, self.width, 4)
        zbuf = np.asarray(zbuf, dtype=np.float32).reshape(self.height, self.width)
        depth = (_FAR * _NEAR) / (_FAR - (_FAR - _NEAR) * zbuf)
        rgb = rgba[:, :, :3].copy()
        if self.analytic_planes:
            self._planes.fill(rgb, depth, zbuf >= 1.0, np.asarray(position_xz, dtype=np.float64), yaw)
        depth = np.clip((depth - MIN_DEPTH) / (MAX_DEPTH - MIN_DEPTH), 0.0, 1.0).astype(np.float32)
        return rgb, depth[:, :, None]

    def close(self) -> None:
        if getattr(self, "_client", -1) >= 0:
            with contextlib.suppress(pb.error):
                pb.disconnect(physicsClientId=self._client)
            self._client = -1

    def __del__(self) -> None:
        # At interpreter shutdown pybullet's module globals may already be gone; nothing to free then.
        with contextlib.suppress(Exception):
            self.close()
