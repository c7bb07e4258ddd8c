"""RGB and depth by exact ray casting against the scene's boxes, vectorised over image columns (numpy).

Our houses are axis-aligned boxes (walls reach the ceiling, furniture is lower) on a flat floor under a
flat ceiling, seen by a level pinhole camera. So each image column is one horizontal ray in the floor
plane: a 2-D slab test against every box gives where the column enters and leaves it, the nearest
wall ends the column, and each row of the column then hits, in closed form, the ceiling, that wall,
the floor, or a piece of furniture in front (its side face, or its top when it is below the camera).
Depth is exact z-depth; colour is the surface's colour times a per-face shade matched to the former
pybullet TinyRenderer (envs.pointnav.render_tiny), which tests compare against pixel by pixel.
About 9x (128 px) to 14x (256 px) faster than TinyRenderer on the same views (docs/pointnav.md).
"""

from __future__ import annotations

import math

import numpy as np

from envs.pointnav.planes import PlaneFiller
from envs.pointnav.scene import Scene

SENSOR_HEIGHT = 1.25  # Habitat's RGB/depth sensors sit 1.25 m above the agent's feet
MIN_DEPTH = 0.0
MAX_DEPTH = 10.0

# Shade per face: the median ratio of TinyRenderer's colour to the surface colour over 20 random views
# of 4 houses (its ambient + diffuse under the former fixed light; its specular term varies with the
# view by about +-5%): faces looking -x, +x, -z, +z (Habitat frame) and furniture tops.
FACE_SHADE = np.array([0.784, 0.781, 0.789, 0.779, 0.780])
_FACES = 5
_SCALE = 1.0 / (MAX_DEPTH - MIN_DEPTH)  # metres -> Habitat's normalised depth (MIN_DEPTH is 0)


def _pack(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) -> uint32 (...): one gather fetches a whole pixel (little-endian RGBx)."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    out = np.zeros((*rgb.shape[:-1], 4), dtype=np.uint8)
    out[..., :3] = rgb
    return out.view(np.uint32)[..., 0]


def check_camera(width: int, height: int, hfov_deg: float) -> tuple[int, int, float]:
    """(width, height, hfov in radians), refusing an empty image or a field of view outside (0, 180)."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if not 0.0 < hfov_deg < 180.0:
        raise ValueError(f"hfov must be in (0, 180) degrees, got {hfov_deg}")
    return int(width), int(height), math.radians(hfov_deg)


class SceneRenderer:
    """Renders one scene from agent poses; `render(position_xz, yaw)` -> (rgb uint8, depth float32)."""

    def __init__(self, scene: Scene, width: int = 256, height: int = 256, hfov_deg: float = 90.0) -> None:
        self.width, self.height, self.hfov = check_camera(width, height, hfov_deg)
        tan_h = math.tan(self.hfov / 2.0)
        tan_v = tan_h * self.height / self.width
        # Pixel-centre ray slopes: right per unit forward (columns), up per unit forward (rows).
        self.tx = ((np.arange(self.width) + 0.5) / self.width * 2.0 - 1.0) * tan_h
        self.ty = (1.0 - (np.arange(self.height) + 0.5) / self.height * 2.0) * tan_v
        self.scene_id: str | None = None
        self.load(scene)

    def load(self, scene: Scene) -> None:
        """Switch to another scene (tables only; nothing to upload)."""
        self.scene_id = scene.scene_id
        planes = PlaneFiller(scene, self.width, self.height, self.hfov, SENSOR_HEIGHT)
        self.res = scene.resolution
        self._floor = _pack(planes.floor_rgb)  # (rows, cols) uint32
        b = scene.boxes
        self._box = np.array([[x.x0, x.z0, x.x1, x.z1] for x in b], dtype=np.float64).reshape(-1, 4)
        height = np.array([x.height for x in b], dtype=np.float64)
        self._wall = height >= scene.wall_height - 1e-9
        self._height = height
        colors = np.array([x.color for x in b], dtype=np.float64).reshape(-1, 3)
        shaded = colors[:, None, :] * FACE_SHADE[None, :, None] * 255.0
        # Palette: entry box * 5 + face; then the ceiling. The floor is looked up per pixel.
        palette = np.concatenate([shaded.reshape(-1, 3), planes.ceiling_rgb[None].astype(np.float64)])
        self._palette = _pack(np.clip(palette + 0.5, 0, 255).astype(np.uint8))
        self._ceiling_id = np.int32(len(palette) - 1)
        self._gap = scene.wall_height - SENSOR_HEIGHT
        # Per row: z-depth where the row's ray meets the ceiling (rows looking up) or the floor (down).
        with np.errstate(divide="ignore"):
            self._ceil_t = np.where(self.ty > 0, self._gap / self.ty, np.inf)
            self._floor_t = np.where(self.ty < 0, SENSOR_HEIGHT / -self.ty, np.inf)
        self._ceil_d = (self._ceil_t * _SCALE).astype(np.float32)[:, None]
        self._floor_d = (self._floor_t * _SCALE).astype(np.float32)[:, None]
        with np.errstate(divide="ignore"):
            self._inv_ty = np.where(self.ty != 0, 1.0 / self.ty, np.inf)[:, None]
        self._neg_ty = -self.ty  # increasing, for searchsorted
        self._row = np.arange(self.height, dtype=np.int64)[:, None]
        self._cols = np.arange(self.width)
        self._floor_flat = self._floor.ravel()
        self._inv_res = 1.0 / self.res
        finite_t = np.where(np.isfinite(self._floor_t), self._floor_t, 0.0)[:, None]
        self._t_cells = finite_t / self.res  # (H, 1)
        self._tu_cells = finite_t * self.tx[None, :] / self.res  # (H, W)
        self._wall_idx = np.flatnonzero(self._wall)
        self._furn_idx = np.flatnonzero(~self._wall)

    def render(self, position_xz: np.ndarray, yaw: float) -> tuple[np.ndarray, np.ndarray]:
        """RGB (H, W, 3) uint8 and depth (H, W, 1) float32: z-depth / 10 m in [0, 1], as Habitat has it."""
        px, pz = float(position_xz[0]), float(position_xz[1])
        fx, fz = -math.sin(yaw), -math.cos(yaw)
        rx, rz = math.cos(yaw), -math.sin(yaw)  # the agent's right
        dx = fx + self.tx * rx  # (W,) column ray per unit of z-depth
        dz = fz + self.tx * rz
        dx[dx == 0.0] = 1e-12
        dz[dz == 0.0] = 1e-12
        # 2-D slab test, columns x boxes: t_in / t_out along each column's ray (inf: missed).
        b = self._box
        ix, iz = 1.0 / dx[:, None], 1.0 / dz[:, None]
        ax, bx = (b[:, 0] - px) * ix, (b[:, 2] - px) * ix
        az, bz = (b[:, 1] - pz) * iz, (b[:, 3] - pz) * iz
        nx, nz = np.minimum(ax, bx), np.minimum(az, bz)
        t_in = np.maximum(nx, nz)
        t_out = np.minimum(np.maximum(ax, bx), np.maximum(az, bz))
        t_in[(t_in >= t_out) | (t_out <= 0.0)] = np.inf
        cols = self._cols
        if len(self._wall_idx):
            walls_t = t_in[:, self._wall_idx]
            kw = np.argmin(walls_t, axis=1)
            t_wall = walls_t[cols, kw]  # (W,) inf where a column sees no wall (only in open plans)
            k_wall = self._wall_idx[kw]
            wall_id = (k_wall * _FACES + self._face(nx, nz, dx, dz, cols, k_wall)).astype(np.int32)
            wall_id[~np.isfinite(t_wall)] = self._ceiling_id
        else:
            t_wall = np.full(self.width, np.inf)
            wall_id = np.full(self.width, self._ceiling_id, dtype=np.int32)
        # Background per pixel: ceiling above the wall's top edge, floor below its foot, else the wall.
        # Rows look further down as they go (ty decreases), so each column is three runs of rows.
        r_up = np.searchsorted(self._neg_ty, -self._gap / t_wall, side="left")
        r_down = np.searchsorted(self._neg_ty, SENSOR_HEIGHT / t_wall, side="right")
        up, down = self._row < r_up, self._row >= r_down
        depth = np.where(down, self._floor_d, (t_wall * _SCALE).astype(np.float32))  # depth / 10 m
        np.copyto(depth, self._ceil_d, where=up)
        sid = np.where(down, np.int32(-1), wall_id)
        np.copyto(sid, self._ceiling_id, where=up)
        # Furniture in front of the wall: side faces (constant depth per column) and tops (per row).
        ty = self.ty[:, None]
        front = t_in[:, self._furn_idx] < t_wall[:, None]
        for f in np.flatnonzero(front.any(axis=0)):
            k = int(self._furn_idx[f])
            js = np.flatnonzero(front[:, f])
            j0, j1 = int(js[0]), int(js[-1]) + 1
            tin, tout = t_in[j0:j1, k], np.minimum(t_out[j0:j1, k], t_wall[j0:j1])
            h = self._height[k] - SENSOR_HEIGHT  # top relative to the camera
            yt = ty * tin
            side = (yt <= h) & (yt >= -SENSOR_HEIGHT)
            cand = np.where(side, tin * _SCALE, np.inf)
            cid = k * _FACES + self._face(nx, nz, dx, dz, slice(j0, j1), k)
            cid = np.broadcast_to(cid[None, :], cand.shape)
            if h < 0.0:  # a top below the camera: rows whose ray drops to it between entry and exit
                t_top = h * self._inv_ty  # (H, 1); rows looking up give negative values, never inside
                top = (t_top >= tin[None, :]) & (t_top <= tout[None, :])
                cand = np.where(top, t_top * _SCALE, cand)
                cid = np.where(top, k * _FACES + 4, cid)
            sub = depth[:, j0:j1]
            nearer = cand < sub
            np.copyto(sub, cand, where=nearer, casting="unsafe")
            np.copyto(sid[:, j0:j1], cid, where=nearer)
        self.last_surface = sid  # palette index per pixel (-1: floor): which surface each pixel shows
        rgb32 = self._palette[sid]  # the floor (-1) is overwritten below
        r0 = int(r_down.min())
        if r0 < self.height:  # floor: look the material up where each row's ray meets the floor
            # hit = p + t_i (f + tx_j r), in cells; t_i tx_j / res is a per-camera table.
            hx = (px * self._inv_res + fx * self._t_cells[r0:]) + rx * self._tu_cells[r0:]
            hz = (pz * self._inv_res + fz * self._t_cells[r0:]) + rz * self._tu_cells[r0:]
            fh, fw = self._floor.shape
            ix_ = hx.astype(np.int32)
            iz_ = hz.astype(np.int32)
            np.clip(ix_, 0, fw - 1, out=ix_)
            np.clip(iz_, 0, fh - 1, out=iz_)
            iz_ *= fw
            iz_ += ix_
            np.copyto(rgb32[r0:], self._floor_flat[iz_], where=sid[r0:] < 0)
        # Per-channel copies: ~5x faster than copying a (H, W, 4)[..., :3] byte view in one go.
        rgb = np.empty((self.height, self.width, 3), dtype=np.uint8)
        packed = rgb32.view(np.uint8).reshape(self.height, self.width, 4)
        for c in range(3):
            rgb[:, :, c] = packed[:, :, c]
        np.minimum(depth, 1.0, out=depth)
        return rgb, depth[:, :, None]

    @staticmethod
    def _face(
        nx: np.ndarray, nz: np.ndarray, dx: np.ndarray, dz: np.ndarray, j: object, k: object
    ) -> np.ndarray:
        """Face entered (0 -x, 1 +x, 2 -z, 3 +z): the slab whose entry came last, against the ray."""
        x_face = nx[j, k] > nz[j, k]
        return np.where(x_face, (dx[j] < 0).astype(np.int32), 2 + (dz[j] < 0))

    def close(self) -> None:
        """Nothing to free (kept for the renderer interface)."""
