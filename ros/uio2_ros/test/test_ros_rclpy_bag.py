"""The real node records a bag; rosbags and real rclpy read it back; the converter makes a dataset of it.

Runs only where rclpy is installed (ros/ci/test_rclpy.sh: PyPI ROS 2 Jazzy wheels, discovery OFF).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import RCLPY_SKIP

rclpy = pytest.importorskip("rclpy", reason=RCLPY_SKIP)

from geometry_msgs.msg import Twist  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from rosbags.rosbag2 import Reader  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from test_ros_rclpy_node import FRAME, Robot, ScriptedPolicy, _node  # noqa: E402
from training.dataset import open_dataset  # noqa: E402

from uio2_ros.bag_to_dataset import convert  # noqa: E402
from uio2_ros.decision import Decision  # noqa: E402
from uio2_ros.images import image_to_rgb  # noqa: E402
from uio2_ros.motion import MOVE_FORWARD, STOP, TURN_LEFT  # noqa: E402

TYPES = {"sensor_msgs/msg/Image": Image, "geometry_msgs/msg/Twist": Twist, "std_msgs/msg/String": String}


@pytest.mark.parametrize("version, storage", [(9, "mcap"), (8, "mcap")])
def test_the_node_records_a_bag_that_rosbags_rclpy_and_the_converter_read(
    ros_context, tmp_path, version, storage
):
    bag = tmp_path / "bag"
    script = [MOVE_FORWARD, TURN_LEFT, STOP]
    node = _node(ros_context, ScriptedPolicy(script), record_bag=str(bag), bag_version=version,
                 bag_storage=storage, policy_period_s=0.05)  # fmt: skip
    robot = Robot(ros_context, node)
    try:
        robot.start()
        assert robot.spin(20.0, camera_hz=20, until=lambda: len(robot.decisions) >= 3), "3 decisions"
        robot.spin(0.2, camera_hz=20)
    finally:
        robot.close()  # destroy_node closes the bag
    assert (bag / "metadata.yaml").is_file()
    assert f"version: {version}" in (bag / "metadata.yaml").read_text()

    with Reader(bag) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics["/camera/image_raw"] == "sensor_msgs/msg/Image"
        assert topics["/cmd_vel"] == "geometry_msgs/msg/Twist"
        assert topics["/uio2_policy/decision"] == "std_msgs/msg/String"
        counts = {t: 0 for t in topics}
        decisions, images, twists = [], [], []
        for conn, _stamp, raw in reader.messages():
            counts[conn.topic] += 1
            if conn.msgtype not in TYPES:
                continue
            msg = deserialize_message(raw, TYPES[conn.msgtype])  # the real rclpy deserialiser
            if conn.topic == "/uio2_policy/decision":
                decisions.append(Decision.from_json(msg.data))
            elif conn.topic == "/camera/image_raw":
                images.append(msg)
            elif conn.topic == "/cmd_vel":
                twists.append(msg)
    assert [d.action for d in decisions] == script == [d["action"] for d in robot.decisions]
    assert len(images) > 10 and all(np.array_equal(image_to_rgb(m), FRAME) for m in images)
    assert twists[-1].linear.x == 0.0 and twists[-1].angular.z == 0.0  # the stop on shutdown, recorded
    assert max(t.linear.x for t in twists) > 0.05 and max(t.angular.z for t in twists) > 0.05
    assert counts["/cmd_vel"] == len(twists)

    summary = convert([bag], tmp_path / "ds", fps=2)
    assert summary["episodes"] == 1 and summary["frames"] == 3
    ep = open_dataset(tmp_path / "ds").episode(0)
    assert ep["action"].reshape(-1).tolist() == script
    np.testing.assert_array_equal(ep["observation.images.rgb"][0], FRAME)
    np.testing.assert_allclose(ep["observation.pointgoal_with_gps_compass"][0], [2.0, 0.0], atol=1e-6)
