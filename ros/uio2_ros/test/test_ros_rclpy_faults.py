"""The real node against what kills or fools robot nodes: huge numbers, huge instructions, bad and
frozen camera stamps, odometry that stops, a full disk while recording, an exception in the tick.

Each test checks the node is alive afterwards and that every command it published was zero or within
the limits. Runs only where rclpy is installed (ros/ci/test_rclpy.sh: PyPI ROS 2 Jazzy wheels,
discovery OFF).
"""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from conftest import RCLPY_SKIP

rclpy = pytest.importorskip("rclpy", reason=RCLPY_SKIP)

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from geometry_msgs.msg import PoseStamped, TwistStamped  # noqa: E402
from rosbags.rosbag2 import Reader  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from test_ros_rclpy_node import Robot, ScriptedPolicy, _node  # noqa: E402

from uio2_ros.bag import recover  # noqa: E402
from uio2_ros.motion import MOVE_FORWARD, TURN_LEFT  # noqa: E402

LIMITS = {"max_linear": 0.3, "max_angular": 0.8, "max_linear_accel": 0.5, "max_angular_accel": 1.5}


def _check_commands(robot: Robot) -> np.ndarray:
    """Every command finite and within the limits, and, measured between the stamps it carries, no
    speed-up faster than the acceleration limits (stops may go to zero at once). Returns [v, w]."""
    msgs = [m for _, m in robot.commands]
    assert msgs and all(isinstance(m, TwistStamped) for m in msgs)
    t = np.array([m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in msgs], np.int64)
    vw = np.array([(m.twist.linear.x, m.twist.angular.z) for m in msgs])
    assert np.isfinite(vw).all()
    assert np.abs(vw[:, 0]).max() <= LIMITS["max_linear"] and np.abs(vw[:, 1]).max() <= LIMITS["max_angular"]
    dt = np.diff(t) * 1e-9
    accel = np.array([LIMITS["max_linear_accel"], LIMITS["max_angular_accel"]])
    speeding_up = np.abs(vw[1:]) > np.abs(vw[:-1])
    step = np.abs(np.diff(vw, axis=0))
    allowed = dt[:, None] * accel + 1e-12
    assert (step[speeding_up] <= allowed[speeding_up]).all(), "acceleration above the limit"
    return vw


def _stamp_s(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def _commanded_after(robot: Robot, seconds: float) -> list:
    """Commands the node stamped (decided) later than `seconds` (ROS time)."""
    return [m for _, m in robot.commands if _stamp_s(m) > seconds]


def _moving(robot: Robot, last: int = 5) -> bool:
    return any(m.twist.linear.x != 0.0 or m.twist.angular.z != 0.0 for _, m in robot.commands[-last:])


def _node_for(ros_context, script, **params):
    node = _node(ros_context, ScriptedPolicy(script), stamped=True, policy_period_s=0.05, **LIMITS, **params)
    return node, Robot(ros_context, node, twist_type=TwistStamped)


def test_huge_numbers_and_instructions_are_refused_and_a_failing_tick_sends_zero(ros_context, capfd):
    node, robot = _node_for(ros_context, [MOVE_FORWARD])
    instructions = robot.io.create_publisher(String, "/uio2_policy/instruction", 10)
    try:
        robot.start()
        robot.spin(2.0, camera_hz=20, until=lambda: _moving(robot, last=2))
        assert _moving(robot), "the robot should be moving"
        # a distance that overflows, a goal beyond the workspace, a goal with no frame
        for x, frame in ((1.7e308, "odom"), (1e300, "odom"), (1.0, "")):
            goal = PoseStamped()
            goal.header.frame_id = frame
            goal.pose.position.x = goal.pose.position.y = x
            goal.pose.orientation.w = 1.0
            robot.goal.publish(goal)
        robot.odometry(x=1.7e308, y=1.7e308)
        for _ in range(3):
            instructions.publish(String(data="x" * 1_000_000))
        robot.spin(0.6, camera_hz=20)
        assert node.dropped == {"/goal_pose": 3, "/odom": 1, "/uio2_policy/instruction": 3}
        assert _moving(robot) and node.tick_errors == 0  # alive, still driving to the last good goal
        zero_quaternion = PoseStamped()  # a point goal: its orientation is never read
        zero_quaternion.header.frame_id = "odom"
        zero_quaternion.pose.position.x = 1.0
        episode = node.runner.episode
        robot.goal.publish(zero_quaternion)
        robot.spin(0.3, camera_hz=20)
        assert node.runner.episode == episode + 1 and node.dropped["/goal_pose"] == 3

        real_tick = node.runner.tick

        def broken_tick(*args, **kwargs):
            raise RuntimeError("injected fault")

        node.runner.tick = broken_tick
        robot.spin(0.1, camera_hz=20)  # commands already on their way arrive
        robot.commands.clear()
        robot.spin(0.3, camera_hz=20)
        assert robot.commands and not _moving(robot, last=len(robot.commands)), "a failing tick sends zero"
        assert node.tick_errors >= 3
        node.runner.tick = real_tick
        robot.commands.clear()
        robot.spin(1.0, camera_hz=20, until=lambda: _moving(robot, last=2))
        assert _moving(robot), "the node recovers once the tick works again"
    finally:
        robot.close()
    _check_commands(robot)
    err = capfd.readouterr().err
    assert err.count("instruction of 1000000 characters") == 1, "logged once (throttled)"
    assert "x" * 1000 not in err  # the text itself is never logged
    assert err.count("control tick failed") == 1 and "injected fault" in err


def test_bad_and_frozen_camera_stamps_stop_the_robot_and_good_ones_resume(ros_context):
    node, robot = _node_for(ros_context, [TURN_LEFT], max_image_age_s=0.2, max_stamp_age_s=0.5)
    clock = robot.io.get_clock()
    frozen = clock.now().to_msg()
    bad = {
        "1970": lambda: Time(sec=0, nanosec=0),
        "future": lambda: Time(sec=clock.now().to_msg().sec + 60),
        "frozen": lambda: frozen,
    }
    try:
        robot.start()
        for kind, reason in (("1970", "bad_stamp"), ("frozen", "frozen_camera"), ("future", "bad_stamp")):
            robot.stamp = None
            robot.spin(0.8, camera_hz=20, until=lambda: _moving(robot, last=2))
            assert _moving(robot, last=2), f"not moving before the {kind} stamps"
            frozen = clock.now().to_msg()
            robot.stamp = bad[kind]
            since = clock.now().nanoseconds * 1e-9
            robot.spin(0.7, camera_hz=20)
            # max_image_age_s after the last good frame, plus a tick and delivery under load
            late = _commanded_after(robot, since + 0.2 + 0.15)
            assert late and all(m.twist.angular.z == 0.0 and m.twist.linear.x == 0.0 for m in late), kind
            assert node.runner.stats[reason] > 0, kind
        robot.stamp = None
        robot.spin(0.8, camera_hz=20, until=lambda: _moving(robot, last=2))
        assert _moving(robot, last=2) and node.tick_errors == 0
    finally:
        robot.close()
    _check_commands(robot)


def test_odometry_that_stops_stops_a_goal_driven_robot(ros_context):
    node, robot = _node_for(ros_context, [MOVE_FORWARD], max_odom_age_s=0.3)
    try:
        robot.start(goal=(5.0, 0.0))
        robot.spin(2.0, camera_hz=20, until=lambda: _moving(robot, last=2))
        assert _moving(robot)
        robot.odom_live = False  # the camera goes on; odometry falls silent
        robot.odometry()
        since = robot.io.get_clock().now().nanoseconds * 1e-9
        robot.spin(0.7, camera_hz=20)
        late = _commanded_after(robot, since + 0.3 + 0.15)  # max_odom_age_s, a tick, delivery under load
        assert late and all(m.twist.linear.x == 0.0 for m in late)
        assert node.runner.stats["stale_odometry"] > 0
        robot.odom_live = True
        robot.spin(1.0, camera_hz=20, until=lambda: _moving(robot, last=2))
        assert _moving(robot, last=2)
    finally:
        robot.close()
    _check_commands(robot)


class FullDisk:
    """The bag writer's real file object, on a disk that has just filled up: every write fails the
    way a full tmpfs fails it (OSError ENOSPC)."""

    def __init__(self, f):
        self._f = f
        self.refused = 0

    def write(self, data):
        self.refused += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._f, name)


def test_a_full_disk_while_recording_stops_the_recording_not_the_robot(ros_context, tmp_path):
    node, robot = _node_for(ros_context, [TURN_LEFT], record_bag=str(tmp_path / "bag"))
    diagnostics: list[DiagnosticArray] = []
    robot.io.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    try:
        robot.start()
        robot.spin(2.0, camera_hz=20, until=lambda: _moving(robot, last=2))
        robot.spin(1.0, camera_hz=20, until=lambda: node.recorder.message_counts["/camera/image_raw"] > 10)
        node.recorder.flush()
        assert _moving(robot) and node.recorder is not None
        storage = node.recorder._writer.storage  # rosbags' MCAP writer
        storage.bio = disk = FullDisk(storage.bio)
        robot.commands.clear()
        robot.spin(2.0, camera_hz=20, until=lambda: node.recorder is None)  # it flushes every second
        robot.spin(0.5, camera_hz=20)
        assert disk.refused > 0 and node.recorder is None
        assert "No space left on device" in node.recording_error
        assert robot.commands and _moving(robot), "the robot must keep being commanded"
        assert node.tick_errors == 0 and not node.dropped
        status = {s.name: s for d in diagnostics for s in d.status}
        recording = status["uio2_policy: recording"]
        assert recording.level == DiagnosticStatus.ERROR and "No space left" in recording.message
    finally:
        robot.close()  # closing the failed recorder must not raise either
    _check_commands(robot)
    summary = recover(tmp_path / "bag")  # what was flushed before the disk filled up is kept
    with Reader(tmp_path / "bag") as reader:
        assert reader.message_count > 10, summary
