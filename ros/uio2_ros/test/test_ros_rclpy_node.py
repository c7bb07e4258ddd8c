"""The real rclpy node, in-process: Image in -> Twist / TwistStamped out, watchdog, limits, bad input.

Runs only where rclpy is installed (ros/ci/test_rclpy.sh: PyPI ROS 2 Jazzy wheels, discovery OFF).
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from conftest import RCLPY_SKIP

rclpy = pytest.importorskip("rclpy", reason=RCLPY_SKIP)

from geometry_msgs.msg import PoseStamped, Twist, TwistStamped  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Bool, String  # noqa: E402

from uio2_ros.images import image_fields  # noqa: E402
from uio2_ros.motion import MOVE_FORWARD, TURN_LEFT  # noqa: E402
from uio2_ros.policy_node import PolicyNode  # noqa: E402

FRAME = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


class ScriptedPolicy:
    name = "scripted"

    def __init__(self, script):
        self.script, self.calls, self.last_info = list(script), 0, {}

    def reset(self, task):
        pass

    def act(self, obs, info=None):
        action = self.script[self.calls % len(self.script)]
        self.calls += 1
        self.last_info = {"decoded_text": str(action)}
        return action


class Robot:
    """The rest of the robot: a camera, odometry, a goal, the enable switch, and a cmd_vel listener."""

    def __init__(self, context, node: PolicyNode, twist_type=Twist):
        self.node = node
        self.io = rclpy.create_node("fake_robot", context=context)
        self.camera = self.io.create_publisher(Image, "/camera/image_raw", 10)
        self.odom = self.io.create_publisher(Odometry, "/odom", 10)
        self.goal = self.io.create_publisher(PoseStamped, "/goal_pose", 10)
        self.enable = self.io.create_publisher(Bool, "/uio2_policy/enable", 10)
        self.odom_live = False  # publish odometry with every camera frame (from `start` on)
        self.stamp = None  # None: camera frames are stamped now; else a callable giving the Time message
        self.commands: list[tuple[float, object]] = []
        self.decisions: list[dict] = []
        self.io.create_subscription(
            twist_type, "/cmd_vel", lambda m: self.commands.append((time.monotonic(), m)), 10
        )
        self.io.create_subscription(String, "/uio2_policy/decision",
                                    lambda m: self.decisions.append(json.loads(m.data)), 10)  # fmt: skip
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(node)
        self.executor.add_node(self.io)

    def image(self, fields=None):
        msg = Image(**(fields or {k: v for k, v in image_fields(FRAME).items() if k != "data"}))
        if fields is None:
            msg.data = image_fields(FRAME)["data"]
        msg.header.stamp = self.io.get_clock().now().to_msg() if self.stamp is None else self.stamp()
        msg.header.frame_id = "camera"
        self.camera.publish(msg)

    def odometry(self, x=0.0, y=0.0):
        odom = Odometry()
        odom.header.frame_id = "odom"
        odom.header.stamp = self.io.get_clock().now().to_msg()
        odom.pose.pose.position.x, odom.pose.pose.position.y = x, y
        odom.pose.pose.orientation.w = 1.0
        self.odom.publish(odom)

    def start(self, goal=(2.0, 0.0)):
        goal_msg = PoseStamped()
        goal_msg.header.frame_id = "odom"
        goal_msg.pose.position.x, goal_msg.pose.position.y = goal
        goal_msg.pose.orientation.w = 1.0
        self.spin(0.3)  # let the endpoints match
        self.odometry()
        self.odom_live = True
        self.goal.publish(goal_msg)
        self.spin(0.1)
        self.enable.publish(Bool(data=True))

    def spin(self, seconds: float, camera_hz: float | None = None, until=None):
        end, next_frame = time.monotonic() + seconds, 0.0
        while time.monotonic() < end:
            if camera_hz and time.monotonic() >= next_frame:
                self.image()
                if self.odom_live:
                    self.odometry()
                next_frame = time.monotonic() + 1.0 / camera_hz
            self.executor.spin_once(timeout_sec=0.005)
            if until is not None and until():
                return True
        return False

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.io.destroy_node()


def _node(context, scripted=None, **params):
    """The node with these parameter overrides; `scripted` replaces the policy the parameters name."""
    overrides = [Parameter(k, value=v) for k, v in params.items()]
    return PolicyNode(policy=scripted, context=context, parameter_overrides=overrides)


def _twists(robot):
    return [m.twist if isinstance(m, TwistStamped) else m for _, m in robot.commands]


def test_image_in_twist_out_through_a_tiny_uio2(ros_context):
    node = _node(ros_context, policy="uio2", model="tiny", max_policy_latency_s=300.0, max_image_age_s=5.0)
    robot = Robot(ros_context, node)
    try:
        robot.start()
        assert robot.spin(300.0, camera_hz=10, until=lambda: robot.decisions), "no decision within 300 s"
        robot.spin(2.5, camera_hz=10)
        decision = robot.decisions[0]
        assert decision["family"] == "pointnav" and decision["fallback"] is False
        assert decision["text"] in ("stop", "move forward", "turn left", "turn right")
        assert decision["pointgoal"] == pytest.approx([2.0, 0.0])
        assert decision["image_topics"] == {"rgb": "/camera/image_raw"}
        twists = _twists(robot)
        assert len(twists) > 20
        v = np.array([t.linear.x for t in twists])
        w = np.array([t.angular.z for t in twists])
        assert np.abs(v).max() <= 0.3 and np.abs(w).max() <= 0.8
        action = decision["action"]
        if action == 1:
            assert v.max() > 0.05 and np.abs(w).max() == 0.0
        elif action in (2, 3):
            assert (w.max() if action == 2 else -w.min()) > 0.05 and np.abs(v).max() == 0.0
        else:
            assert np.abs(v).max() == 0.0 and np.abs(w).max() == 0.0
    finally:
        robot.close()


def test_stamped_commands_carry_the_base_frame(ros_context):
    node = _node(ros_context, ScriptedPolicy([TURN_LEFT]), stamped=True, base_frame="base_footprint")
    robot = Robot(ros_context, node, twist_type=TwistStamped)
    try:
        robot.start()
        robot.spin(1.5, camera_hz=20)
        assert robot.commands and all(isinstance(m, TwistStamped) for _, m in robot.commands)
        assert {m.header.frame_id for _, m in robot.commands} == {"base_footprint"}
        assert max(m.twist.angular.z for _, m in robot.commands) > 0.1
    finally:
        robot.close()


def test_stale_images_stop_the_robot_within_the_limit(ros_context):
    limit = 0.3
    node = _node(ros_context, ScriptedPolicy([MOVE_FORWARD]), max_image_age_s=limit, policy_period_s=0.05)
    robot = Robot(ros_context, node)
    try:
        robot.start()
        robot.spin(1.5, camera_hz=30, until=lambda: any(t.linear.x > 0.05 for t in _twists(robot)[-10:]))
        assert any(t.linear.x > 0.05 for t in _twists(robot)[-10:]), "the robot should be moving"
        robot.image()
        last_frame = time.monotonic()
        robot.commands.clear()
        robot.spin(1.0)  # the camera goes silent
        moving = [t for t, m in robot.commands if m.linear.x != 0.0 or m.angular.z != 0.0]
        stopped_by = max(moving, default=last_frame) - last_frame
        assert stopped_by <= limit + 0.1, f"still moving {stopped_by:.3f} s after the last frame"
        assert all(m.linear.x == 0.0 for t, m in robot.commands if t > last_frame + limit + 0.1)
        assert node.runner.stats["stale_image"] > 0
    finally:
        robot.close()


def test_commands_stay_within_limits_under_fuzzed_policy_outputs(ros_context):
    rng = np.random.default_rng(0)
    script = [rng.choice(np.array([0, 1, 2, 3, -1, 7, math.nan, math.inf], dtype=object)) for _ in range(200)]
    script += ["garbage", None, {"x": 1}]
    limits = {"max_linear": 0.15, "max_angular": 0.4, "max_linear_accel": 0.3, "max_angular_accel": 0.8}
    node = _node(ros_context, ScriptedPolicy(script), policy_period_s=0.02, **limits)
    robot = Robot(ros_context, node)
    try:
        robot.start(goal=(5.0, 5.0))
        robot.spin(2.0, camera_hz=30)  # test_ros_runner_fuzz.py fuzzes the runner for thousands of ticks
        twists = _twists(robot)
        v = np.array([t.linear.x for t in twists])
        w = np.array([t.angular.z for t in twists])
        assert len(v) > 20 and np.isfinite(v).all() and np.isfinite(w).all()
        assert np.abs(v).max() <= limits["max_linear"] and np.abs(w).max() <= limits["max_angular"]
        assert np.abs(w).max() > 0.05 or np.abs(v).max() > 0.05  # it did act on the valid outputs
    finally:
        robot.close()


def test_malformed_messages_are_logged_and_dropped(ros_context):
    node = _node(ros_context, ScriptedPolicy([TURN_LEFT]))
    robot = Robot(ros_context, node)
    try:
        robot.start()
        good = {k: v for k, v in image_fields(FRAME).items() if k != "data"}
        bad = [
            {**good, "encoding": "yuv422_weird"},
            {**good, "step": 10},
            {**good, "height": 0},
        ]
        for fields in bad:
            robot.image(fields)  # no data: empty / wrong size
        robot.spin(0.5)
        assert node.dropped.get("/camera/image_raw", 0) == len(bad)
        nan_goal = PoseStamped()
        nan_goal.pose.position.x = math.nan
        robot.goal.publish(nan_goal)
        robot.spin(0.3)
        assert node.dropped.get("/goal_pose", 0) == 1
        robot.commands.clear()
        robot.spin(1.0, camera_hz=20)  # the node is alive and acts on good frames
        assert max(t.angular.z for t in _twists(robot)) > 0.1
    finally:
        robot.close()


def test_disable_stops_and_incompatible_qos_is_reported(ros_context):
    node = _node(ros_context, ScriptedPolicy([TURN_LEFT]))
    robot = Robot(ros_context, node)
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    robot.io.create_subscription(Twist, "/cmd_vel", lambda m: None, latched)  # our publisher is volatile
    try:
        robot.start()
        robot.spin(1.0, camera_hz=20)
        assert any(t.angular.z > 0.1 for t in _twists(robot))
        robot.enable.publish(Bool(data=False))
        robot.spin(0.2, camera_hz=20)
        robot.commands.clear()
        robot.spin(0.5, camera_hz=20)
        assert robot.commands and all(m.angular.z == 0.0 and m.linear.x == 0.0 for _, m in robot.commands)
        assert node.qos_incompatible >= 1
    finally:
        robot.close()


def test_every_parameter_is_declared_and_types_are_enforced(ros_context):
    from pathlib import Path

    import yaml

    from uio2_ros.params import PARAMETERS

    node = _node(ros_context, ScriptedPolicy([0]))
    try:
        for name in PARAMETERS:
            assert node.has_parameter(name), name
        doc = yaml.safe_load((Path(__file__).parents[1] / "config" / "uio2_policy.yaml").read_text())
        for name in doc["uio2_policy"]["ros__parameters"]:
            assert node.has_parameter(name), f"the YAML sets {name!r}, which the node does not declare"
    finally:
        node.destroy_node()
    with pytest.raises(Exception, match="max_linear"):
        _node(ros_context, ScriptedPolicy([0]), max_linear="fast")


def test_manipulation_publishes_a_clamped_pick_and_place_pair(ros_context):
    action = {
        "pose0_position": np.array([0.1, 0.2]),  # x below the workspace
        "pose0_rotation": np.array([0.0, 0.0, 0.0, 1.0]),
        "pose1_position": np.array([0.6, -0.9]),  # y beyond it
        "pose1_rotation": np.array([0.0, 0.0, 1.0, 0.0]),
    }
    node = _node(ros_context, ScriptedPolicy([action]), family="vima", image_views=["front"],
                 workspace_frame="table", pick_height=0.02)  # fmt: skip
    robot = Robot(ros_context, node)
    picks, places = [], []
    robot.io.create_subscription(PoseStamped, "/uio2_policy/pick_pose", picks.append, 10)
    robot.io.create_subscription(PoseStamped, "/uio2_policy/place_pose", places.append, 10)
    try:
        robot.spin(0.3)
        robot.enable.publish(Bool(data=True))
        assert robot.spin(5.0, camera_hz=20, until=lambda: picks and places), "no pick/place pair"
    finally:
        robot.close()
    pick, place = picks[0], places[0]
    assert pick.header.frame_id == place.header.frame_id == "table"
    assert (pick.pose.position.x, pick.pose.position.y, pick.pose.position.z) == pytest.approx(
        (0.25, 0.2, 0.02)
    )
    assert (place.pose.position.x, place.pose.position.y) == pytest.approx(
        (0.6, -0.5)
    )  # clamped to the workspace
    assert abs(place.pose.orientation.z) == pytest.approx(1.0)  # a half turn about z
    assert not robot.commands  # manipulation never drives the base
