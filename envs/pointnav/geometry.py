"""Habitat's frame conventions in one place: y is up, the agent looks along its local -z, +x is its right.

Positions on the floor are handled as 2-D (x, z) pairs; a heading is the yaw angle (radians) about +y,
so TURN_LEFT adds to it. Keeping every conversion here means the sensor, the oracle and the episode
files cannot disagree about which way is left.
"""

from __future__ import annotations

import math

import numpy as np


def yaw_to_quaternion(yaw: float) -> list[float]:
    """Rotation about +y by `yaw`, as Habitat writes it in episode files: [x, y, z, w]."""
    return [0.0, math.sin(yaw / 2.0), 0.0, math.cos(yaw / 2.0)]


def quaternion_to_yaw(q: list[float] | np.ndarray) -> float:
    """Yaw of the agent's forward axis after rotation `q` ([x, y, z, w]); tilt is ignored, as on a navmesh."""
    x, y, z, w = (float(v) for v in q)
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if n == 0.0:
        raise ValueError("rotation quaternion has zero norm")
    x, y, z, w = x / n, y / n, z / n, w / n
    # Rotate the local forward (0, 0, -1) by q and read the yaw back from its x-z components.
    fx = -(2.0 * (x * z + w * y))
    fz = -(1.0 - 2.0 * (x * x + y * y))
    return math.atan2(-fx, -fz)


def forward_vector(yaw: float) -> np.ndarray:
    """World (x, z) direction the agent faces: rotating local -z about +y by `yaw`."""
    return np.array([-math.sin(yaw), -math.cos(yaw)])


def world_to_agent(delta_xz: np.ndarray, yaw: float) -> tuple[float, float]:
    """A world (dx, dz) offset expressed in the agent frame (x right, z backwards)."""
    c, s = math.cos(yaw), math.sin(yaw)
    dx, dz = float(delta_xz[0]), float(delta_xz[1])
    return c * dx - s * dz, s * dx + c * dz


def pointgoal_polar(position: np.ndarray, yaw: float, goal: np.ndarray) -> np.ndarray:
    """Habitat's `pointgoal_with_gps_compass`: [rho, phi], phi = -atan2(x_a, -z_a), positive to the left."""
    x_a, z_a = world_to_agent(np.asarray(goal) - np.asarray(position), yaw)
    rho = math.hypot(x_a, z_a)
    phi = math.atan2(x_a, -z_a)
    return np.array([rho, -phi], dtype=np.float32)


def wrap_angle(a: float) -> float:
    """Angle folded into [-pi, pi)."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def to_xyz(p_xz: np.ndarray, y: float = 0.0) -> list[float]:
    """A floor point as Habitat's [x, y, z] (y up)."""
    return [float(p_xz[0]), float(y), float(p_xz[1])]


def to_xz(p_xyz: list[float] | np.ndarray) -> np.ndarray:
    """Habitat's [x, y, z] onto the floor plane."""
    return np.array([float(p_xyz[0]), float(p_xyz[2])])
