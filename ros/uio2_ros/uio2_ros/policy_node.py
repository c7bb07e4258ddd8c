"""The ROS 2 node: cameras + instruction (+ goal, odometry) in, safe commands out.

The only module that imports rclpy. It declares the parameters of `params.PARAMETERS`, wires topics
with the right QoS (cameras: sensor data, best effort; commands: reliable, depth 10), and hands
every message to the ROS-free `PolicyRunner`; a timer at `control_rate_hz` publishes what the runner
says. Malformed messages are logged and dropped; nothing a subscriber receives can crash the node,
an exception inside the control tick publishes a zero command and the loop goes on, and a recording
fault (a full disk) stops the recording, never the control loop. `/diagnostics` reports both once a
second.

    ros2 run uio2_ros policy_node --ros-args --params-file config/uio2_policy.yaml
    ros2 topic pub --once /uio2_policy/enable std_msgs/msg/Bool '{data: true}'
"""

from __future__ import annotations

import math
import signal
import threading
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, Twist, TwistStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool, Float32MultiArray, String

from uio2_ros.goals import goal_position, planar_pose, quaternion_from_yaw
from uio2_ros.images import compressed_to_rgb, image_to_rgb
from uio2_ros.params import NODE_NAME, PARAMETERS, make_policy, runner_config
from uio2_ros.runner import PickPlace, PolicyRunner, TickOutput

try:  # Iron and newer
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks

RELIABLE = QoSProfile(depth=10)  # KEEP_LAST 10, RELIABLE, VOLATILE: what diff-drive and Nav2 subscribe with


def _type_name(msg_class: type) -> str:
    module = msg_class.__module__.split(".")[0]
    return f"{module}/msg/{msg_class.__name__}"


class PolicyNode(Node):
    """Runs a uio2-embodied policy on a robot. `policy` overrides the one the parameters name (tests)."""

    def __init__(self, policy: Any = None, **node_kwargs: Any):
        super().__init__(NODE_NAME, **node_kwargs)
        for name, (default, description) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        values = {name: self.get_parameter(name).value for name in PARAMETERS}
        self.values = values
        config = runner_config(values)  # bad parameters fail here, before a model is loaded
        self.runner = PolicyRunner(policy if policy is not None else make_policy(values), config)
        self.dropped: dict[str, int] = {}  # malformed messages per topic
        self._drop_logged: dict[str, float] = {}  # topic -> when its last drop was logged
        self.qos_incompatible = 0
        self.tick_errors = 0  # exceptions caught in the control tick (each published a zero command)
        self.recording_error = ""  # why recording stopped ('' while it runs or was never asked for)
        self._record_lock = threading.Lock()
        self.recorder = self._open_recorder(values)
        self._stamp_origin_ns = self.get_clock().now().nanoseconds  # command stamps, relative: exact dt

        self.twist_type = TwistStamped if values["stamped"] else Twist
        self.cmd_pub = self._publisher(self.twist_type, values["cmd_vel_topic"])
        self.decision_pub = self._publisher(String, values["decision_topic"])
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE)
        self.pick_pub = self.place_pub = None
        if values["family"] == "vima":
            self.pick_pub = self._publisher(PoseStamped, values["pick_topic"])
            self.place_pub = self._publisher(PoseStamped, values["place_topic"])

        image_type = CompressedImage if values["compressed"] else Image
        for view, topic in zip(values["image_views"], values["image_topics"], strict=True):
            self._subscribe(image_type, topic, self._image_callback(view), qos_profile_sensor_data)
        self._subscribe(String, values["instruction_topic"], self._on_instruction, RELIABLE)
        self._subscribe(Bool, values["enable_topic"], self._on_enable, RELIABLE)
        if values["family"] == "pointnav":
            self._subscribe(PoseStamped, values["goal_topic"], self._on_goal, RELIABLE)
            self._subscribe(Odometry, values["odom_topic"], self._on_odometry, qos_profile_sensor_data)
        if values["audio_topic"]:
            self._subscribe(Float32MultiArray, values["audio_topic"], self._on_audio, qos_profile_sensor_data)

        self.runner.set_enabled(bool(values["start_enabled"]))
        self.timer = self.create_timer(1.0 / float(values["control_rate_hz"]), self._tick)
        # a finished decision is acted on at once, not up to one control period later
        self._decision_ready = self.create_guard_condition(self._tick)
        self.runner.on_decision_ready = self._decision_ready.trigger
        self.diagnostics_timer = self.create_timer(1.0, self.publish_diagnostics)
        state = "enabled" if values["start_enabled"] else f"disabled until {values['enable_topic']} is true"
        self.get_logger().info(
            f"{values['family']} policy {values['policy']!r} ({values['model']}); commands on "
            f"{self.cmd_pub.topic_name} ({self.twist_type.__name__}); {state}"
        )

    # -- wiring ------------------------------------------------------------------------------------------
    def _qos_warning(self, what: str):
        def log(event: Any) -> None:
            self.qos_incompatible += 1
            self.get_logger().warning(
                f"incompatible QoS on {what}: policy kind {getattr(event, 'last_policy_kind', '?')}; "
                "no messages flow between these endpoints"
            )

        return log

    def _publisher(self, msg_class: type, topic: str):
        events = PublisherEventCallbacks(incompatible_qos=self._qos_warning(f"publisher {topic}"))
        pub = self.create_publisher(msg_class, topic, RELIABLE, event_callbacks=events)
        self._record_topic(pub.topic_name, msg_class, "reliable")
        return pub

    def _subscribe(self, msg_class: type, topic: str, callback, qos: QoSProfile) -> None:
        events = SubscriptionEventCallbacks(incompatible_qos=self._qos_warning(f"subscription {topic}"))
        qos_name = "sensor_data" if qos is qos_profile_sensor_data else "reliable"

        def guarded(msg: Any) -> None:
            self._record(sub.topic_name, msg)
            try:
                callback(msg)
            except Exception as err:  # a bad message must never take the node down
                name = sub.topic_name
                self.dropped[name] = self.dropped.get(name, 0) + 1
                now = time.monotonic()  # throttled per topic: one noisy topic hides no other's problem
                if now - self._drop_logged.get(name, -math.inf) >= 2.0:
                    self._drop_logged[name] = now
                    self.get_logger().warning(f"dropped a message on {name} (#{self.dropped[name]}): {err}")

        sub = self.create_subscription(msg_class, topic, guarded, qos, event_callbacks=events)
        self._record_topic(sub.topic_name, msg_class, qos_name)

    # -- recording ---------------------------------------------------------------------------------------
    def _open_recorder(self, values: dict[str, Any]):
        if not values["record_bag"]:
            return None
        from uio2_ros.bag import BagRecorder

        return BagRecorder(values["record_bag"], version=int(values["bag_version"]),
                           storage=str(values["bag_storage"]))  # fmt: skip

    def _record_topic(self, topic: str, msg_class: type, qos: str) -> None:
        if self.recorder is not None:
            self.recorder.add_topic(topic, _type_name(msg_class), qos)

    def _record(self, topic: str, msg: Any) -> None:
        """Record one message; any fault (ENOSPC, EFBIG, EIO, a closed bag) stops recording, not the node."""
        recorder = self.recorder
        if recorder is None:
            return
        try:
            if recorder.error is not None:  # the background flush failed (e.g. the disk is full)
                raise recorder.error
            recorder.write(topic, time.time_ns(), serialize_message(msg))
        except Exception as err:
            self._stop_recording(err)

    def _stop_recording(self, err: BaseException) -> None:
        with self._record_lock:
            recorder, self.recorder = self.recorder, None
        if recorder is None:
            return  # another callback stopped it already
        self.recording_error = f"{type(err).__name__}: {err}"
        self.get_logger().error(
            f"recording to {recorder.path} stopped: {self.recording_error}. The robot keeps running. "
            f"What was flushed is on disk: `python -m uio2_ros.bag recover {recorder.path}` rebuilds the bag"
        )
        try:
            recorder.close()
        except Exception as close_err:
            self.get_logger().warning(f"closing the failed bag {recorder.path}: {close_err}")
        self.publish_diagnostics()

    # -- inputs ------------------------------------------------------------------------------------------
    def _image_callback(self, view: str):
        def on_image(msg: Any) -> None:
            rgb = compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)
            stamp = msg.header.stamp
            self.runner.on_image(view, rgb, int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec),
                                 clock_ns=self.get_clock().now().nanoseconds)  # fmt: skip

        return on_image

    def _on_instruction(self, msg: String) -> None:
        self.runner.on_instruction(msg.data)  # too long: ValueError, logged (throttled) without the text
        text = msg.data if len(msg.data) <= 200 else f"{msg.data[:200]}... ({len(msg.data)} characters)"
        self.get_logger().info(f"new instruction: {text!r}")

    def _on_enable(self, msg: Bool) -> None:
        self.runner.set_enabled(bool(msg.data))
        self.get_logger().info("enabled" if msg.data else "disabled")

    def _on_goal(self, msg: PoseStamped) -> None:
        x, y = goal_position(msg.pose)  # a point goal: its orientation is not read
        self.runner.on_goal(x, y, msg.header.frame_id)
        self.get_logger().info(f"new goal ({x:.2f}, {y:.2f}) in {msg.header.frame_id!r}")

    def _on_odometry(self, msg: Odometry) -> None:
        self.runner.on_odometry(*planar_pose(msg.pose.pose), msg.header.frame_id)  # its yaw is used

    def _on_audio(self, msg: Float32MultiArray) -> None:
        self.runner.on_audio(msg.data)

    # -- outputs -----------------------------------------------------------------------------------------
    def _tick(self) -> None:
        """One control period. Nothing raised here may end the node: a failure publishes a zero command."""
        now = self.get_clock().now()
        try:
            # the limiter works on the time the command is stamped with, so accelerations measured
            # between stamps hold exactly (seconds since the node started: no float rounding of 1.7e9)
            out: TickOutput = self.runner.tick(stamp=(now.nanoseconds - self._stamp_origin_ns) * 1e-9)
            for event in out.events:
                self.get_logger().info(event)
            if out.velocity is not None:
                self.publish_velocity(out.velocity.linear, out.velocity.angular, now)
            if out.pick_place is not None:
                self._publish_pick_place(out.pick_place)
            if out.decision is not None:
                msg = String(data=out.decision.to_json())
                self.decision_pub.publish(msg)
                self._record(self.decision_pub.topic_name, msg)
        except Exception as err:
            self.tick_errors += 1
            self.get_logger().error(  # once, then at most every 5 s
                f"control tick failed ({self.tick_errors} so far), robot stopped: {type(err).__name__} {err}",
                throttle_duration_sec=5.0,
            )
            try:
                self.runner.limiter.stop((now.nanoseconds - self._stamp_origin_ns) * 1e-9, "tick_error")
                if self.values["family"] == "pointnav":
                    self.publish_velocity(0.0, 0.0, now)
            except Exception as stop_err:  # the context is going away: nothing more can be sent
                self.get_logger().error(f"could not publish the zero command: {stop_err}",
                                        throttle_duration_sec=5.0)  # fmt: skip

    def publish_diagnostics(self) -> None:
        """`diagnostic_msgs/DiagnosticArray` on /diagnostics: the control loop and the recorder."""
        runner = self.runner
        reason = runner.limiter.last.reason
        moving = reason in ("motion", "waiting_for_policy")
        control = DiagnosticStatus(
            level=DiagnosticStatus.OK if moving or reason in ("disabled", "idle", "episode_done")
            else DiagnosticStatus.WARN,
            name=f"{self.get_name()}: control", hardware_id=self.get_name(),
            message=f"last command: {reason}",
            values=[KeyValue(key=k, value=str(v)) for k, v in sorted(runner.stats.items())]
            + [KeyValue(key="tick_errors", value=str(self.tick_errors))]
            + [KeyValue(key=f"dropped {t}", value=str(n)) for t, n in sorted(self.dropped.items())],
        )  # fmt: skip
        if self.recording_error:
            rec_level, rec_message = DiagnosticStatus.ERROR, f"recording stopped: {self.recording_error}"
        elif self.recorder is not None:
            rec_level, rec_message = DiagnosticStatus.OK, f"recording to {self.recorder.path}"
        else:
            rec_level, rec_message = DiagnosticStatus.OK, "not recording (record_bag is empty)"
        recording = DiagnosticStatus(level=rec_level, name=f"{self.get_name()}: recording",
                                     hardware_id=self.get_name(), message=rec_message)  # fmt: skip
        msg = DiagnosticArray(status=[control, recording])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(msg)

    def publish_velocity(self, linear: float, angular: float, stamp: Any = None) -> None:
        """Publish (and record) one command; `stamp` (an rclpy Time) is the time the limiter used."""
        twist = Twist()
        twist.linear.x, twist.angular.z = float(linear), float(angular)
        if self.twist_type is TwistStamped:
            msg = TwistStamped(twist=twist)
            msg.header.stamp = (stamp if stamp is not None else self.get_clock().now()).to_msg()
            msg.header.frame_id = str(self.values["base_frame"])
        else:
            msg = twist
        self.cmd_pub.publish(msg)
        self._record(self.cmd_pub.topic_name, msg)

    def _publish_pick_place(self, command: PickPlace) -> None:
        stamp = self.get_clock().now().to_msg()
        for pub, (x, y, yaw), z in (
            (self.pick_pub, command.pick, self.values["pick_height"]),
            (self.place_pub, command.place, self.values["place_height"]),
        ):
            msg = PoseStamped()
            msg.header.stamp, msg.header.frame_id = stamp, str(self.values["workspace_frame"])
            msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = x, y, float(z)
            qx, qy, qz, qw = quaternion_from_yaw(yaw if math.isfinite(yaw) else 0.0)
            msg.pose.orientation.x, msg.pose.orientation.y = qx, qy
            msg.pose.orientation.z, msg.pose.orientation.w = qz, qw
            pub.publish(msg)
            self._record(pub.topic_name, msg)

    def destroy_node(self) -> None:
        """Stop the robot, then release the policy worker and close the bag."""
        self.runner.on_decision_ready = None
        try:
            if self.values["family"] == "pointnav":
                self.publish_velocity(0.0, 0.0)
        finally:
            self.runner.close()
            recorder, self.recorder = self.recorder, None
            if recorder is not None:
                try:
                    recorder.close()
                except Exception as err:  # e.g. the disk is full: say so, still shut down cleanly
                    self.get_logger().error(f"closing the bag {recorder.path} failed: {err}")
            super().destroy_node()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(args: list[str] | None = None) -> None:
    """Spin until Ctrl-C or SIGTERM (what `ros2 launch` sends), then stop the robot and close the bag.

    rclpy's own signal handler would shut the context down first, after which the node can no
    longer publish its final zero command; so the node handles the signals itself.
    """
    from rclpy.executors import ExternalShutdownException
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    node = PolicyNode()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()  # publishes the zero command while the context is still valid
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
