"""The node as its own process, started the way `ros2 run` starts it, with the shipped parameters YAML.

Two processes talk DDS, so this runs only inside a network namespace with nothing but loopback
(ros/ci/test_rclpy.sh: `unshare -n`, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, UIO2_ROS_NETNS=1).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import RCLPY_SKIP

rclpy = pytest.importorskip("rclpy", reason=RCLPY_SKIP)
if os.environ.get("UIO2_ROS_NETNS") != "1" or os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") != "LOCALHOST":
    pytest.skip(
        "multi-process DDS runs only inside `unshare -n` with LOCALHOST discovery (ros/ci/test_rclpy.sh)",
        allow_module_level=True,
    )

from geometry_msgs.msg import PoseStamped, TwistStamped  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rosbags.rosbag2 import Reader  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Bool, String  # noqa: E402

from uio2_ros.images import image_fields  # noqa: E402

PACKAGE = Path(__file__).resolve().parents[1]
FRAME = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def test_the_node_process_runs_with_the_shipped_yaml_and_stops_the_robot_on_sigint(ros_context, tmp_path):
    bag = tmp_path / "bag"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "uio2_ros.policy_node", "--ros-args",
           "--params-file", str(PACKAGE / "config" / "uio2_policy.yaml"),
           "-p", "policy:=random", "-p", "seed:=3", "-p", f"record_bag:={bag}"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    io = rclpy.create_node("fake_robot", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(io)
    commands, decisions = [], []
    io.create_subscription(TwistStamped, "/cmd_vel", commands.append, 10)
    io.create_subscription(String, "/uio2_policy/decision", lambda m: decisions.append(m.data), 10)
    camera = io.create_publisher(Image, "/camera/image_raw", 10)
    odom_pub = io.create_publisher(Odometry, "/odom", 10)
    goal_pub = io.create_publisher(PoseStamped, "/goal_pose", 10)
    enable_pub = io.create_publisher(Bool, "/uio2_policy/enable", 10)

    odom = Odometry()
    odom.header.frame_id = "odom"
    odom.pose.pose.orientation.w = 1.0

    def spin(seconds, until=None, frames=True):
        end = time.monotonic() + seconds
        while time.monotonic() < end and proc.poll() is None:
            if frames:  # the camera and the odometry (the node stops on either going stale)
                msg = Image(**image_fields(FRAME))
                msg.header.stamp = odom.header.stamp = io.get_clock().now().to_msg()
                camera.publish(msg)
                odom_pub.publish(odom)
            executor.spin_once(timeout_sec=0.05)
            if until is not None and until():
                return True
        return False

    try:
        assert spin(60.0, until=lambda: enable_pub.get_subscription_count() > 0), "the node never subscribed"
        assert spin(10.0, until=lambda: commands), "no command while disabled (it should publish zeros)"
        assert all(m.twist.linear.x == 0.0 and m.twist.angular.z == 0.0 for m in commands)
        goal = PoseStamped()
        goal.header.frame_id = "odom"
        goal.pose.orientation.w = 1.0
        goal.pose.position.x = 3.0
        goal_pub.publish(goal)
        spin(0.2)
        enable_pub.publish(Bool(data=True))
        assert spin(30.0, until=lambda: decisions), "no decision from the node process"
        spin(1.0)
        assert {m.header.frame_id for m in commands} == {"base_link"}  # the YAML asks for stamped commands
        v = np.array([m.twist.linear.x for m in commands])
        w = np.array([m.twist.angular.z for m in commands])
        assert np.abs(v).max() <= 0.3 and np.abs(w).max() <= 0.8  # the YAML's limits
        proc.send_signal(signal.SIGINT)
        commands.clear()
        spin(5.0, frames=False, until=lambda: proc.poll() is not None)
        executor.spin_once(timeout_sec=0.5)
        assert proc.wait(timeout=20) == 0, proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        executor.shutdown()
        io.destroy_node()
    with Reader(bag) as reader:  # the node closed its bag on the way out
        recorded = {c.topic for c in reader.connections if reader.message_count}
        last_cmd = list(
            reader.messages(connections=[c for c in reader.connections if c.topic == "/cmd_vel"])
        )[-1]
    assert {"/camera/image_raw", "/cmd_vel", "/uio2_policy/decision"} <= recorded
    from rclpy.serialization import deserialize_message

    final = deserialize_message(last_cmd[2], TwistStamped)
    assert final.twist.linear.x == 0.0 and final.twist.angular.z == 0.0  # the stop on shutdown
