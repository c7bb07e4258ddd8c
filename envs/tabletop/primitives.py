"""The two primitives (suction pick-and-place, spatula push) in the fast ``kinematic`` execution mode.

Kinematic pick: the suction "descends" by a ray at pose0; the first body hit is grasped if it is a movable
task object. Place keeps the grasp offset and applies the yaw difference pose1 - pose0 (like a rigid
suction hold), drops the object just above whatever lies under its footprint, and lets physics settle.
Push: an invisible spatula blade is driven by a constraint along pose0 -> pose1, so contacts are real.
"""

from __future__ import annotations

import math

import numpy as np
import pybullet as p

from envs.tabletop.engine import World, quat_yaw, yaw_quat

BLADE_HALF = (0.005, 0.018, 0.02)  # thickness (along push), half width, half height (metres)
BLADE_BACKOFF = 0.04  # blade centre starts this far behind pose0
BLADE_SHORT = 0.025  # and stops this far short of pose1
PUSH_SPEED = 0.2  # metres per second of sim time


def rot2(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s], [s, c]])


class KinematicExecutor:
    """Fast execution: no arm; keeps the benchmark's robot body ids with invisible placeholders."""

    mode = "kinematic"

    def __init__(self) -> None:
        self.blade: int = -1
        self._cid: int = -1

    def setup(self, world: World, ee: str) -> None:
        """Create the robot bodies right after the table (ids 2.. like the benchmark's arm and ee)."""
        world.add_invisible_marker()  # arm
        if ee == "suction":
            world.add_invisible_marker()  # ee base
            world.add_invisible_marker()  # suction head
        else:
            c = world.client
            col = p.createCollisionShape(p.GEOM_BOX, halfExtents=BLADE_HALF, physicsClientId=c)
            self.blade = p.createMultiBody(1.0, col, -1, [0, 0, 2.0], physicsClientId=c)
            p.setCollisionFilterGroupMask(self.blade, -1, 0, 0, physicsClientId=c)
            self._cid = p.createConstraint(
                self.blade, -1, -1, -1, p.JOINT_FIXED, [0, 0, 0], [0, 0, 0], [0, 0, 2.0], physicsClientId=c
            )
            world.robot_ids.append(self.blade)

    # ------------------------------------------------------------ suction
    def grasp_target(self, world: World, xy) -> int:
        """Body the suction cup would touch first when descending at xy (-1 if not a movable object)."""
        body, _ = world.ray_down([xy])[0]
        if body in world.objects and not world.objects[body].shape.fixed:
            return body
        return -1

    def pick_place(self, world: World, action: dict[str, np.ndarray]) -> bool:
        p0, p1 = action["pose0_position"].astype(np.float64), action["pose1_position"].astype(np.float64)
        body = self.grasp_target(world, p0)
        if body < 0:
            return False
        dyaw = quat_yaw(action["pose1_rotation"]) - quat_yaw(action["pose0_rotation"])
        pos, yaw = world.pose(body)
        new_xy = p1 + rot2(dyaw) @ (pos[:2] - p0)
        new_yaw = yaw + dyaw
        world.set_pose(body, [pos[0], pos[1], 5.0], new_yaw)  # lift out of the way of the support rays
        z = self.support_height(world, body, new_xy, new_yaw)
        world.set_pose(body, [new_xy[0], new_xy[1], z + 0.003], new_yaw)
        return True

    @staticmethod
    def support_height(world: World, body: int, xy, yaw: float) -> float:
        """Highest surface under the object's footprint at its new pose."""
        info = world.objects[body]
        r = info.shape.radius * info.scale * 0.8
        pts = [xy] + [
            xy + r * np.array([math.cos(a), math.sin(a)]) for a in np.linspace(0, 2 * math.pi, 9)[:-1]
        ]
        pts += [
            xy + 0.5 * r * np.array([math.cos(a), math.sin(a)]) for a in np.linspace(0, 2 * math.pi, 5)[:-1]
        ]
        hits = [h for b, h in world.ray_down(pts, z_top=3.0) if b != body]
        return max([0.0, *hits])

    # ------------------------------------------------------------ spatula
    def push(self, world: World, action: dict[str, np.ndarray]) -> bool:
        c = world.client
        p0, p1 = action["pose0_position"].astype(np.float64), action["pose1_position"].astype(np.float64)
        d = p1 - p0
        length = float(np.linalg.norm(d))
        if length < 1e-4:
            return False
        u = d / length
        yaw = math.atan2(u[1], u[0])
        start = p0 - BLADE_BACKOFF * u
        end = p1 - BLADE_SHORT * u
        travel = float(np.dot(end - start, u))
        if travel <= 0:
            return False
        z = 0.005 + BLADE_HALF[2]
        orn = yaw_quat(yaw)
        p.resetBasePositionAndOrientation(self.blade, [start[0], start[1], z], orn, physicsClientId=c)
        p.changeConstraint(self._cid, [start[0], start[1], z], orn, maxForce=2000, physicsClientId=c)
        p.setCollisionFilterGroupMask(self.blade, -1, 1, 1, physicsClientId=c)
        n = max(1, int(travel / (PUSH_SPEED / 240.0)))
        for i in range(1, n + 1):
            q = start + u * travel * i / n
            p.changeConstraint(self._cid, [q[0], q[1], z], orn, maxForce=2000, physicsClientId=c)
            p.stepSimulation(physicsClientId=c)
            if i % 12 == 0 and world.monitor is not None:
                world.monitor(world)
        world.step(24)
        p.setCollisionFilterGroupMask(self.blade, -1, 0, 0, physicsClientId=c)
        p.resetBasePositionAndOrientation(self.blade, [0, 0, 2.0], [0, 0, 0, 1], physicsClientId=c)
        p.changeConstraint(self._cid, [0, 0, 2.0], [0, 0, 0, 1], maxForce=2000, physicsClientId=c)
        return True
