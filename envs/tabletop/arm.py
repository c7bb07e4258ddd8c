"""The ``arm`` execution mode: pybullet's bundled Franka Panda (base at the origin, like the benchmark's UR5)
moved by inverse kinematics and joint position control; suction descends until contact, spatula pushes.

Every motion has a budget in simulation steps (not wall-clock time as in the benchmark), so results stay
deterministic on a loaded machine. Between actions the arm rests folded over its base, outside both views.
"""

from __future__ import annotations

import math

import numpy as np
import pybullet as p
import pybullet_data

from envs.tabletop.engine import World, quat_yaw
from envs.tabletop.primitives import BLADE_BACKOFF, BLADE_HALF, BLADE_SHORT

ARM_URDF = "franka_panda/panda.urdf"
EE_LINK = 11  # panda_grasptarget: between the (closed) fingers, which act as the suction cup
CUP_LINKS = (8, 9, 10)  # hand and fingers: what counts as the cup touching something
HOVER_Z = 0.25  # height of the tool tip when travelling (the benchmark uses 0.32 m)
DESCEND_FROM = 0.08  # above the highest surface under the tool, then creep down until contact
DESCEND_STEP = 0.004
HOME = [0.0, -0.6, 0.0, -0.5, 0.0, 1.0, 0.785, 0.0, 0.0]  # folded up over the base, outside both views
READY = [0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785, 0.0, 0.0]  # elbow up, tool down: a good IK start
MAX_FORCE = 400.0
BLADE_DROP = 0.06  # blade centre below the tool frame, along the tool axis


def _down_quat(yaw: float) -> tuple[float, float, float, float]:
    """Tool pointing down (link z axis along -z world), rotated by ``yaw`` about the vertical."""
    return p.getQuaternionFromEuler([math.pi, 0.0, yaw])


class _ShadowArm:
    """A kinematic copy of the arm used only for IK (one per process)."""

    def __init__(self) -> None:
        self.c = p.connect(p.DIRECT)
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self.c)
        self.arm = p.loadURDF(ARM_URDF, [0, 0, 0], useFixedBase=True, physicsClientId=self.c)
        self.joints = [
            j
            for j in range(p.getNumJoints(self.arm, physicsClientId=self.c))
            if p.getJointInfo(self.arm, j, physicsClientId=self.c)[2] != p.JOINT_FIXED
        ]

    def solve(self, target, orn, start, iters: int) -> list[float]:
        q = list(start)
        for _ in range(iters):
            for j, v in zip(self.joints, q, strict=True):
                p.resetJointState(self.arm, j, v, physicsClientId=self.c)
            q = list(
                p.calculateInverseKinematics(
                    self.arm,
                    EE_LINK,
                    target,
                    orn,
                    maxNumIterations=100,
                    residualThreshold=1e-5,
                    physicsClientId=self.c,
                )
            )
            q[-2:] = [0.0, 0.0]  # fingers stay closed
        return q


_SHADOW: _ShadowArm | None = None


def _shadow() -> _ShadowArm:
    global _SHADOW
    if _SHADOW is None:
        _SHADOW = _ShadowArm()
    return _SHADOW


class ArmExecutor:
    """Suction pick-and-place and spatula push executed by a simulated arm."""

    mode = "arm"

    def __init__(self) -> None:
        self.arm = -1
        self.joints: list[int] = []
        self.tip = 0.0
        self.blade = -1
        self._blade_cid = -1
        self.c = -1
        self._yaw = 0.0
        self.yaw_offset = 0.0

    # ------------------------------------------------------------ setup
    def setup(self, world: World, ee: str) -> None:
        c = self.c = world.client
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
        self.arm = p.loadURDF(ARM_URDF, [0, 0, 0], useFixedBase=True, physicsClientId=c)
        world.robot_ids.append(self.arm)
        self.joints = [
            j
            for j in range(p.getNumJoints(self.arm, physicsClientId=c))
            if p.getJointInfo(self.arm, j, physicsClientId=c)[2] != p.JOINT_FIXED
        ]
        self._reset_joints(READY)
        ready = p.getLinkState(self.arm, EE_LINK, computeForwardKinematics=True, physicsClientId=c)
        self.yaw_offset = float(p.getEulerFromQuaternion(ready[5])[2])  # tool yaw of the relaxed arm
        self._reset_joints(HOME)
        for link in range(-1, p.getNumJoints(self.arm, physicsClientId=c)):
            p.setCollisionFilterGroupMask(self.arm, link, 2, 0xFFFF, physicsClientId=c)
            # hidden in the images as VIMA-Bench hides its arm (alpha 0): its front camera sees the folded arm
            p.changeVisualShape(self.arm, link, rgbaColor=[1, 1, 1, 0], physicsClientId=c)
        if ee == "suction":
            world.add_invisible_marker()  # ee base and suction head: ids like the benchmark's
            world.add_invisible_marker()
            self._reset_joints(self._ik([0.5, 0.0, 0.3], 0.0, HOME))
            link = p.getLinkState(self.arm, EE_LINK, computeForwardKinematics=True, physicsClientId=c)
            lo = min(p.getAABB(self.arm, j, physicsClientId=c)[0][2] for j in CUP_LINKS)
            self.tip = float(link[4][2] - lo)  # from the ee frame down to the finger tips (the "cup")
            self._reset_joints(HOME)
        else:
            col = p.createCollisionShape(p.GEOM_BOX, halfExtents=BLADE_HALF, physicsClientId=c)
            self.blade = p.createMultiBody(0.05, col, -1, [0, 0, 1.5], physicsClientId=c)
            world.robot_ids.append(self.blade)
            p.setCollisionFilterGroupMask(self.blade, -1, 2, 0xFFFF, physicsClientId=c)
            self.tip = BLADE_DROP + BLADE_HALF[2]
            self._reset_joints(HOME)
            pos, orn = self._blade_pose()
            p.resetBasePositionAndOrientation(self.blade, pos, orn, physicsClientId=c)
            # the blade follows the tool through a world constraint updated every sim step (stiffer than a
            # link-to-link constraint, which lets a light blade twist on contact)
            self._blade_cid = p.createConstraint(
                self.blade,
                -1,
                -1,
                -1,
                p.JOINT_FIXED,
                [0, 0, 0],
                [0, 0, 0],
                pos,
                [0, 0, 0, 1],
                orn,
                physicsClientId=c,
            )
            for j in range(-1, p.getNumJoints(self.arm, physicsClientId=c)):
                p.setCollisionFilterPair(self.arm, self.blade, j, -1, 0, physicsClientId=c)
        p.setJointMotorControlArray(
            self.arm,
            self.joints,
            p.POSITION_CONTROL,
            targetPositions=HOME,
            forces=[MAX_FORCE] * len(self.joints),
            physicsClientId=c,
        )

    def _blade_pose(self):
        link = p.getLinkState(self.arm, EE_LINK, computeForwardKinematics=True, physicsClientId=self.c)
        return p.multiplyTransforms(link[4], link[5], [0, 0, BLADE_DROP], [0, 0, 0, 1])

    def _follow(self) -> None:
        if self.blade >= 0:
            pos, orn = self._blade_pose()
            p.changeConstraint(self._blade_cid, pos, orn, maxForce=2000, physicsClientId=self.c)

    def _reset_joints(self, q) -> None:
        for j, v in zip(self.joints, q, strict=True):
            p.resetJointState(self.arm, j, v, physicsClientId=self.c)

    def _q(self) -> list[float]:
        return [s[0] for s in p.getJointStates(self.arm, self.joints, physicsClientId=self.c)]

    def _ik(self, tip_xyz, yaw: float, start, iters: int = 4) -> list[float]:
        """IK for the tool tip, solved on a shadow arm in a separate client: pybullet's solver is local and
        reads the body's joint states, so it is re-run from reset states there, never disturbing the sim."""
        return _shadow().solve([tip_xyz[0], tip_xyz[1], tip_xyz[2] + self.tip], _down_quat(yaw), start, iters)

    # ------------------------------------------------------------ motion
    def _drive(self, q, world: World, max_steps: int = 240, tol: float = 3e-3, stop=None) -> bool:
        """Position-control towards q until reached, ``stop()`` is true, or the step budget runs out."""
        p.setJointMotorControlArray(
            self.arm,
            self.joints,
            p.POSITION_CONTROL,
            targetPositions=q,
            forces=[MAX_FORCE] * len(self.joints),
            positionGains=[0.3] * len(self.joints),
            physicsClientId=self.c,
        )
        for i in range(max_steps):
            self._follow()
            p.stepSimulation(physicsClientId=self.c)
            if stop is not None and stop():
                return True
            if i % 4 == 3:
                if world.monitor is not None and i % 12 == 11:
                    world.monitor(world)
                if max(abs(a - b) for a, b in zip(self._q(), q, strict=True)) < tol:
                    return True
        return False

    def _move(
        self, world: World, xyz, yaw: float, step: float = 0.05, stop=None, max_steps: int = 120
    ) -> bool:
        """Straight-line tip motion in Cartesian waypoints, yaw interpolated too (IK from current joints)."""
        cur = np.asarray(self._tip(), dtype=np.float64)
        goal = np.asarray(xyz, dtype=np.float64)
        yaw_from = self._yaw
        dyaw = (yaw - yaw_from + math.pi) % (2 * math.pi) - math.pi
        n = max(1, math.ceil(float(np.linalg.norm(goal - cur)) / step), math.ceil(abs(dyaw) / 0.35))
        self._yaw = yaw_from + dyaw
        for i in range(1, n + 1):
            wp = cur + (goal - cur) * i / n
            wy = yaw_from + dyaw * i / n
            q = self._ik(wp, wy, self._q())
            last = i == n
            tol = 3e-3 if last else 0.03  # only the last waypoint needs precision
            if (
                self._drive(q, world, max_steps=2 * max_steps if last else max_steps, tol=tol, stop=stop)
                and stop is not None
                and stop()
            ):
                return True
        return False

    def _tip(self) -> list[float]:
        link = p.getLinkState(self.arm, EE_LINK, computeForwardKinematics=True, physicsClientId=self.c)
        return [link[4][0], link[4][1], link[4][2] - self.tip]

    def _lift(self, world: World, xy, yaw: float) -> None:
        """Straight up in small waypoints first (joint-space moves near the table would swing the load into
        neighbours), then fast to the travel height."""
        z = self._tip()[2]
        self._move(world, [xy[0], xy[1], z + 0.08], yaw, step=0.02)
        self._move(world, [xy[0], xy[1], HOVER_Z], yaw, step=0.2)

    def _hold(self, world: World, steps: int = 12) -> None:
        """Stop where the contact happened (the motors would otherwise keep pressing down)."""
        p.setJointMotorControlArray(
            self.arm,
            self.joints,
            p.POSITION_CONTROL,
            targetPositions=self._q(),
            targetVelocities=[0.0] * len(self.joints),
            forces=[MAX_FORCE] * len(self.joints),
            physicsClientId=self.c,
        )
        world.step(steps)

    def _teleport(self, q) -> None:
        """Free-space moves high above the table are teleported (nothing to touch there), saving sim time."""
        self._reset_joints(q)
        p.setJointMotorControlArray(
            self.arm,
            self.joints,
            p.POSITION_CONTROL,
            targetPositions=list(q),
            forces=[MAX_FORCE] * len(self.joints),
            physicsClientId=self.c,
        )
        if self.blade >= 0:
            pos, orn = self._blade_pose()
            p.resetBasePositionAndOrientation(self.blade, pos, orn, physicsClientId=self.c)
            self._follow()

    def _hover(self, xy, yaw: float) -> None:
        self._yaw = yaw
        self._teleport(self._ik([xy[0], xy[1], HOVER_Z], yaw, READY, iters=6))

    def _home(self, world: World) -> None:
        self._teleport(HOME)

    def _contacts(self, body: int, link: int | None = None) -> list[int]:
        kw = {"linkIndexA": link} if link is not None else {}
        pts = p.getContactPoints(bodyA=body, physicsClientId=self.c, **kw)
        return [pt[2] for pt in pts if pt[2] != self.arm and pt[2] != self.blade and pt[8] < 0.002]

    def _cup_collisions(self, body: int, enable: bool) -> None:
        for link in CUP_LINKS:
            for obj_link in range(-1, p.getNumJoints(body, physicsClientId=self.c)):
                p.setCollisionFilterPair(self.arm, body, link, obj_link, int(enable), physicsClientId=self.c)

    # ------------------------------------------------------------ suction
    def pick_place(self, world: World, action: dict[str, np.ndarray]) -> bool:
        p0, p1 = action["pose0_position"].astype(np.float64), action["pose1_position"].astype(np.float64)
        # Only the yaw difference reaches the object, so the tool is turned symmetrically about the reach
        # direction: this keeps the last joint away from its limits for any requested rotation.
        d = quat_yaw(action["pose1_rotation"]) - quat_yaw(action["pose0_rotation"])
        d = (d + math.pi) % (2 * math.pi) - math.pi
        base = math.atan2(p0[1], p0[0]) + self.yaw_offset
        yaw0, yaw1 = base - d / 2, base + d / 2
        self._hover(p0, yaw0)
        top = max([0.0, *(h for _, h in world.ray_down([p0]))])
        self._move(world, [p0[0], p0[1], top + DESCEND_FROM], yaw0, step=0.05)
        touched: list[int] = []

        def touch() -> bool:
            touched[:] = [b for link in CUP_LINKS for b in self._contacts(self.arm, link)]
            return bool(touched)

        z = top + DESCEND_FROM
        while z > -0.01 and not touch():
            z -= DESCEND_STEP
            self._drive(self._ik([p0[0], p0[1], z], yaw0, self._q()), world, max_steps=24, stop=touch)
        self._hold(world)
        body = touched[0] if touched else -1
        grasped = body in world.objects and not world.objects[body].shape.fixed
        cid = -1
        if grasped:
            link = p.getLinkState(self.arm, EE_LINK, computeForwardKinematics=True, physicsClientId=self.c)
            opos, oorn = p.getBasePositionAndOrientation(body, physicsClientId=self.c)
            inv_pos, inv_orn = p.invertTransform(link[4], link[5])
            rel_pos, rel_orn = p.multiplyTransforms(inv_pos, inv_orn, opos, oorn)
            cid = p.createConstraint(
                self.arm,
                EE_LINK,
                body,
                -1,
                p.JOINT_FIXED,
                [0, 0, 0],
                rel_pos,
                [0, 0, 0],
                parentFrameOrientation=rel_orn,
                physicsClientId=self.c,
            )
            p.changeConstraint(cid, maxForce=200, physicsClientId=self.c)
            self._cup_collisions(body, False)  # the cup holds the object: no contact fight while carrying
        self._lift(world, p0, yaw0)
        if grasped:
            self._move(world, [p1[0], p1[1], HOVER_Z], yaw1, step=0.15)
            lo, _ = world.aabb(body)
            hang = self._tip()[2] - lo[2]  # how far the object hangs below the tool
            top = max([0.0, *(h for b, h in world.ray_down([p1]) if b != body)])
            self._move(world, [p1[0], p1[1], top + hang + 0.03], yaw1, step=0.05)

            def landed() -> bool:
                return bool(self._contacts(body))

            z = top + hang + 0.03
            while z > top + hang - 0.02 and not landed():
                z -= DESCEND_STEP
                self._drive(self._ik([p1[0], p1[1], z], yaw1, self._q()), world, max_steps=24, stop=landed)
            self._hold(world)
            p.removeConstraint(cid, physicsClientId=self.c)
            self._lift(world, p1, yaw1)
            self._cup_collisions(body, True)
        self._home(world)
        return grasped

    # ------------------------------------------------------------ spatula
    def push(self, world: World, action: dict[str, np.ndarray]) -> bool:
        p0, p1 = action["pose0_position"].astype(np.float64), action["pose1_position"].astype(np.float64)
        d = p1 - p0
        length = float(np.linalg.norm(d))
        if length < 1e-4:
            return False
        u = d / length
        yaw = math.atan2(u[1], u[0])
        natural = math.atan2(p0[1], p0[0]) + self.yaw_offset
        if abs((yaw - natural + math.pi) % (2 * math.pi) - math.pi) > math.pi / 2:
            yaw += math.pi  # the blade is symmetric: turn the wrist the short way
        start, end = p0 - BLADE_BACKOFF * u, p1 - BLADE_SHORT * u
        self._hover(start, yaw)
        self._move(world, [start[0], start[1], 0.005], yaw, step=0.05)
        self._move(world, [end[0], end[1], 0.005], yaw, step=0.005, max_steps=24)
        world.step(24)
        # back off the pushed block, then lift in small steps: a push towards the robot leaves the block
        # between the blade and the arm's way home
        back = end - 0.02 * u
        self._move(world, [back[0], back[1], 0.005], yaw, step=0.01, max_steps=24)
        self._move(world, [back[0], back[1], HOVER_Z], yaw, step=0.05)
        self._home(world)
        return True
