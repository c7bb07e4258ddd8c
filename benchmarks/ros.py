"""Image-in to command-out latency of the real ROS 2 policy node, in-process (rclpy, discovery OFF).

    .venv-ros/bin/python benchmarks/ros.py --policy uio2 --decisions 100     # tiny UIO2
    .venv-ros/bin/python benchmarks/ros.py --policy scripted                  # the node's own overhead
    .venv-ros/bin/python benchmarks/ros.py --policy scripted --harvest tick   # decisions wait for a tick

Needs the rclpy venv (`ros/ci/test_rclpy.sh` makes `.venv-ros`). A fake camera publishes frames
stamped with the publish time; for each decision the node publishes its record (naming the frame's
stamp) in the same control tick as the first command it leads to, so latency = arrival of the
record - the frame's stamp: frame age + waiting for a tick + the policy + publishing. Discrete
motions are made tiny so every tick may ask for a decision. Prints JSON (ms: median, p90, p99).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ros" / "uio2_ros"))

import argparse
import json
import os
import time

import numpy as np

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "OFF"  # no packet leaves this process


class Scripted:
    """Answers instantly: what is left is the node's own latency."""

    name = "scripted"

    def __init__(self):
        self.calls, self.last_info = 0, {}

    def reset(self, task):
        pass

    def act(self, obs, info=None):
        self.calls += 1
        self.last_info = {"decoded_text": "turn left"}
        return 2


def _percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values)
    return {k: round(float(np.percentile(arr, q)), 2) for k, q in (("median", 50), ("p90", 90), ("p99", 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="uio2", choices=("uio2", "scripted"))
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--decisions", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=3, help="decisions left out (JIT compilation)")
    parser.add_argument("--control-rate-hz", type=float, default=20.0)
    parser.add_argument("--camera-hz", type=float, default=30.0)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument(
        "--harvest",
        default="immediate",
        choices=("immediate", "tick"),
        help="act on a decision when it is ready (the node's way) or at the next tick",
    )
    args = parser.parse_args()

    import rclpy
    from geometry_msgs.msg import PoseStamped, Twist
    from nav_msgs.msg import Odometry
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image
    from std_msgs.msg import Bool, String
    from uio2_ros.images import image_fields
    from uio2_ros.policy_node import PolicyNode

    params = {"policy": "uio2", "model": args.model, "control_rate_hz": args.control_rate_hz,
              "policy_period_s": 0.001, "forward_step_m": 1e-4, "turn_angle_deg": 0.01,
              "max_policy_latency_s": 600.0, "max_image_age_s": 5.0, "max_episode_steps": 10**6}  # fmt: skip
    rclpy.init()
    node = PolicyNode(policy=Scripted() if args.policy == "scripted" else None,
                      parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])  # fmt: skip
    if args.harvest == "tick":
        node.runner.on_decision_ready = None
    io = rclpy.create_node("fake_robot")
    frame = np.random.default_rng(0).integers(0, 256, (args.image_size, args.image_size, 3), dtype=np.uint8)
    fields = image_fields(frame)
    camera = io.create_publisher(Image, "/camera/image_raw", 10)
    odom_pub = io.create_publisher(Odometry, "/odom", 10)
    goal_pub = io.create_publisher(PoseStamped, "/goal_pose", 10)
    enable_pub = io.create_publisher(Bool, "/uio2_policy/enable", 10)
    latencies, policy_ms, commands = [], [], [0]

    odom = Odometry()  # published with every frame: the node stops when odometry goes stale
    odom.header.frame_id = "odom"
    odom.pose.pose.orientation.w = 1.0

    def new_goal() -> None:
        goal = PoseStamped()
        goal.header.frame_id = "odom"
        goal.pose.orientation.w = 1.0
        goal.pose.position.x = 3.0
        odom_pub.publish(odom)
        goal_pub.publish(goal)

    def on_decision(msg: String) -> None:
        arrived = time.time_ns()
        record = json.loads(msg.data)
        latencies.append((arrived - int(record["image_stamps_ns"]["rgb"])) / 1e6)
        policy_ms.append(float(record["decision_ms"]))
        if record["action"] == 0 or record["fallback"]:
            new_goal()  # STOP ends the episode: start another so decisions keep coming

    io.create_subscription(String, "/uio2_policy/decision", on_decision, 10)
    io.create_subscription(Twist, "/cmd_vel", lambda m: commands.__setitem__(0, commands[0] + 1), 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(io)

    new_goal()
    enable_pub.publish(Bool(data=True))
    want = args.decisions + args.warmup
    start, next_frame = time.monotonic(), 0.0
    while len(latencies) < want and time.monotonic() - start < 1800:
        now = time.monotonic()
        if now >= next_frame:
            msg = Image(**fields)
            msg.header.stamp = odom.header.stamp = io.get_clock().now().to_msg()
            camera.publish(msg)
            odom_pub.publish(odom)
            next_frame = now + 1.0 / args.camera_hz
        executor.spin_once(timeout_sec=0.002)
    elapsed = time.monotonic() - start
    executor.shutdown()
    node.destroy_node()
    io.destroy_node()
    rclpy.shutdown()
    measured = latencies[args.warmup :]
    print(json.dumps({
        "benchmark": "ros_image_to_command_latency",
        "policy": args.policy if args.policy == "scripted" else f"uio2:{args.model}",
        "decisions": len(measured),
        "control_rate_hz": args.control_rate_hz,
        "harvest": args.harvest,
        "camera_hz": args.camera_hz,
        "image": [args.image_size, args.image_size],
        "latency_ms": _percentiles(measured),
        "policy_ms": _percentiles(policy_ms[args.warmup :]),
        "decisions_per_s": round(len(latencies) / elapsed, 2),
        "commands_published": commands[0],
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
