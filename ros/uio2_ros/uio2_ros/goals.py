"""Point goals in the robot frame, with Habitat's `pointgoal_with_gps_compass` convention.

ROS (REP 103) poses: x forward, y left, yaw counter-clockwise about z. Habitat's observation is
[rho, phi]: the distance to the goal and its bearing, positive to the left. Both conventions agree
on "positive to the left", so phi = atan2(dy_robot, dx_robot).
"""

from __future__ import annotations

import math
from typing import Any


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rad, counter-clockwise about z) of an xyzw quaternion; tilt is ignored.

    Any finite non-zero quaternion is normalised first (scaled by its largest component, so huge or
    tiny ones neither overflow nor underflow); zero or non-finite ones are not rotations: ValueError.
    """
    scale = max(abs(x), abs(y), abs(z), abs(w))
    if not math.isfinite(scale) or scale == 0.0 or not all(math.isfinite(v) for v in (x, y, z, w)):
        raise ValueError(f"orientation quaternion ({x}, {y}, {z}, {w}) is not a rotation")
    x, y, z, w = x / scale, y / scale, z / scale, w / scale
    n = math.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def quaternion_from_yaw(yaw: float) -> tuple[float, float, float, float]:
    """xyzw quaternion of a rotation by `yaw` about z."""
    return (0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0))


def planar_pose(pose: Any) -> tuple[float, float, float]:
    """(x, y, yaw) of a `geometry_msgs/Pose`-like object (`.position`, `.orientation`)."""
    p, q = pose.position, pose.orientation
    x, y = float(p.x), float(p.y)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"pose position ({x}, {y}) is not finite")
    return x, y, yaw_from_quaternion(float(q.x), float(q.y), float(q.z), float(q.w))


def goal_position(pose: Any) -> tuple[float, float]:
    """(x, y) of a goal `geometry_msgs/Pose`-like object. A PointNav goal is a point: its orientation
    is never read, so a zero (or any) quaternion there is accepted, deliberately."""
    x, y = float(pose.position.x), float(pose.position.y)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"goal position ({x}, {y}) is not finite")
    return x, y


def pointgoal(robot_xy_yaw: tuple[float, float, float], goal_xy: tuple[float, float]) -> tuple[float, float]:
    """[rho, phi] of `goal_xy` seen from a robot at (x, y, yaw), both in one fixed frame."""
    rx, ry, yaw = robot_xy_yaw
    dx, dy = float(goal_xy[0]) - rx, float(goal_xy[1]) - ry
    c, s = math.cos(yaw), math.sin(yaw)
    forward, left = c * dx + s * dy, -s * dx + c * dy
    return math.hypot(forward, left), math.atan2(left, forward)
