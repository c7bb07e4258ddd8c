"""Floor and ceiling by exact ray-plane intersection, filled into the pixels the rasterizer left empty.

In a closed house every camera ray that misses the walls and furniture ends on the floor (looking
down) or the ceiling (looking up), two horizontal planes, so their depth per pixel is closed-form and
their colour is a lookup of the floor material at the hit point. Letting TinyRenderer draw only walls and
furniture halves the pixels it shades, which is where its time goes (about 140 ns per shaded pixel here).
Shading factors match what TinyRenderer gives these planes under the renderer's fixed light.
"""

from __future__ import annotations

import math

import numpy as np

from envs.pointnav.scene import Scene

FLOOR_SHADE = 0.745  # TinyRenderer's lit/unlit ratio for an upward face under the renderer's light
CEILING_SHADE = 0.81  # TinyRenderer gives 0.79-0.85 depending on the view (specular)


class PlaneFiller:
    """Per-pixel floor / ceiling colour and z-depth for one scene and one camera model."""

    def __init__(self, scene: Scene, width: int, height: int, hfov: float, sensor_height: float) -> None:
        self.res = scene.resolution
        h, w = scene.occupancy.shape
        colors = np.zeros((h, w, 3), dtype=np.float32)
        for f in scene.floors:  # later patches (rooms) paint over the base floor
            r0, r1 = round(f.z0 / self.res), round(f.z1 / self.res)
            c0, c1 = round(f.x0 / self.res), round(f.x1 / self.res)
            colors[r0:r1, c0:c1] = f.color
        self.floor_rgb = np.clip(colors * FLOOR_SHADE * 255.0 + 0.5, 0, 255).astype(np.uint8)
        self.ceiling_rgb = np.clip(
            np.array(scene.ceiling_color) * CEILING_SHADE * 255.0 + 0.5, 0, 255
        ).astype(np.uint8)
        tan_h = math.tan(hfov / 2.0)
        tan_v = tan_h * height / width
        # Pixel-centre ray slopes: right per unit forward (columns), up per unit forward (rows).
        self.tx = ((np.arange(width) + 0.5) / width * 2.0 - 1.0) * tan_h
        self.ty = (1.0 - (np.arange(height) + 0.5) / height * 2.0) * tan_v
        self.sensor_height = sensor_height
        self.ceiling_gap = scene.wall_height - sensor_height

    def fill(
        self, rgb: np.ndarray, depth_m: np.ndarray, empty: np.ndarray, position_xz: np.ndarray, yaw: float
    ) -> None:
        """Write floor/ceiling colour and z-depth (metres) into the `empty` pixels, in place."""
        rows, cols = np.nonzero(empty)
        if rows.size == 0:
            return
        ty = self.ty[rows]
        down = ty < 0.0
        up = ~down
        # Ceiling: a constant colour; z-depth = height gap / upward slope.
        if up.any():
            depth_m[rows[up], cols[up]] = self.ceiling_gap / np.maximum(ty[up], 1e-9)
            rgb[rows[up], cols[up]] = self.ceiling_rgb
        if down.any():
            r, c = rows[down], cols[down]
            t = self.sensor_height / -ty[down]  # z-depth (the forward component of the ray is 1)
            fx, fz = -math.sin(yaw), -math.cos(yaw)
            rx, rz = math.cos(yaw), -math.sin(yaw)  # the agent's right (+x in its frame)
            hx = position_xz[0] + t * (fx + self.tx[c] * rx)
            hz = position_xz[1] + t * (fz + self.tx[c] * rz)
            gr = np.clip((hz / self.res).astype(np.int64), 0, self.floor_rgb.shape[0] - 1)
            gc = np.clip((hx / self.res).astype(np.int64), 0, self.floor_rgb.shape[1] - 1)
            depth_m[r, c] = t
            rgb[r, c] = self.floor_rgb[gr, gc]
