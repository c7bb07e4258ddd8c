"""Robot bags -> datasets: the frames the policy saw, the actions it commanded, readable by training.

The bags are made the way the node makes them (every camera frame, one decision record per policy
step) by driving the real `PolicyRunner` on simulated time, without rclpy (the rclpy tier records
through the real node: test_ros_rclpy_bag.py).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from training.dataset import open_dataset

from uio2_ros.bag import BagRecorder, image_message, make_message
from uio2_ros.bag_to_dataset import BagConversionError, convert, main
from uio2_ros.decision import Decision
from uio2_ros.runner import PolicyRunner, RunnerConfig

CAMERA = "/camera/image_raw"
DECISIONS = "/uio2_policy/decision"
H, W = 12, 16


class Scripted:
    name = "scripted"

    def __init__(self, script, fallback_at=()):
        self.script, self.fallback_at, self.calls, self.last_info = list(script), set(fallback_at), 0, {}

    def reset(self, task):
        pass

    def act(self, obs, info=None):
        action = self.script[min(self.calls, len(self.script) - 1)]
        self.last_info = {"decoded_text": str(action), "fallback": self.calls in self.fallback_at}
        self.calls += 1
        return action


def frame_at(k: int) -> np.ndarray:
    """A camera frame that says which one it is (k) in every pixel."""
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = k % 256, (k // 256) % 256, 7
    return rgb


def record_rollout(path, episodes, *, fallback_at=(), skip_frames=()):
    """Drive the runner through `episodes` (action lists ending in STOP) at 20 Hz, camera 10 Hz; record it.

    Returns the decisions and {stamp_ns: frame number} of every frame recorded.
    """
    t = [0.0]
    policy = Scripted([a for ep in episodes for a in ep], fallback_at)
    runner = PolicyRunner(policy, RunnerConfig(image_topics={"rgb": CAMERA}), clock=lambda: t[0])
    decisions, stamps = [], {}
    with BagRecorder(path, flush_interval_s=None) as bag:
        bag.add_topic(CAMERA, "sensor_msgs/msg/Image", "sensor_data")
        bag.add_topic(DECISIONS, "std_msgs/msg/String")
        ts = bag.typestore
        k = 0
        for e in range(len(episodes)):
            runner.on_odometry(0.1 * e, 0.0, 0.0, "odom")
            runner.on_goal(2.0, 1.0 + e, "odom")
            runner.set_enabled(True)
            for _ in range(2000):
                t[0] += 0.05
                k += 1
                if k % 2 == 0:
                    stamp = 1_700_000_000_000_000_000 + k * 50_000_000
                    rgb = frame_at(k)
                    runner.on_image("rgb", rgb, stamp)
                    if k not in skip_frames:
                        bag.write(CAMERA, stamp, image_message(ts, rgb, stamp_ns=stamp, step=W * 3 + 4))
                    stamps[stamp] = k
                runner.on_odometry(0.1 * e, 0.0, 0.0, "odom")
                out = runner.tick()
                if runner.deciding:
                    runner.wait_for_decision(10)
                if out.decision is not None:
                    decisions.append(out.decision)
                    bag.write(
                        DECISIONS, stamp, make_message(ts, "std_msgs/msg/String", data=out.decision.to_json())
                    )
                if runner.done:  # every scripted episode ends with STOP
                    break
            runner.set_enabled(False)
            runner.tick()
    runner.close()
    return decisions, stamps


def test_each_decision_becomes_the_frame_it_saw_and_the_action_it_commanded(tmp_path):
    bag = tmp_path / "bag"
    decisions, stamps = record_rollout(bag, [[1, 2, 1, 0], [3, 1, 0]])
    assert [d.action for d in decisions] == [1, 2, 1, 0, 3, 1, 0]
    summary = convert([bag], tmp_path / "ds", fps=2)
    assert summary["episodes"] == 2 and summary["frames"] == 7 and summary["image_size"] == [H, W]

    ds = open_dataset(tmp_path / "ds")
    assert ds.num_episodes == 2 and ds.num_frames == 7
    for i, want in enumerate([decisions[:4], decisions[4:]]):
        ep = ds.episode(i)
        np.testing.assert_array_equal(ep["action"].reshape(-1), [d.action for d in want])
        np.testing.assert_allclose(
            ep["observation.pointgoal_with_gps_compass"], [d.pointgoal for d in want], rtol=1e-6
        )
        for t, d in enumerate(want):  # the exact frame the decision names, not just any frame
            np.testing.assert_array_equal(
                ep["observation.images.rgb"][t], frame_at(stamps[d.image_stamps_ns["rgb"]])
            )
        assert ep["next.done"].reshape(-1).tolist() == [False] * (len(want) - 1) + [True]
        assert ds.episode_extra(i)["ros_episode"] == want[0].episode
    assert ds.episode(1)["observation.pointgoal_with_gps_compass"][0] == pytest.approx(
        decisions[4].pointgoal, rel=1e-6
    )


def test_the_dataset_trains_examples_whose_targets_decode_to_the_commanded_actions(tmp_path):
    from policies.codecs import DiscreteActionCodec
    from training.data import ExampleBuilder, TrainingData
    from uio2_core.config import get_config
    from uio2_core.vocab import tiny_vocabulary

    bag = tmp_path / "bag"
    decisions, _ = record_rollout(bag, [[1, 1, 2, 3, 0]])
    convert([bag], tmp_path / "ds")
    vocab = tiny_vocabulary()
    builder = ExampleBuilder(get_config("tiny"), vocab, text_len=96, target_len=8)
    ds = open_dataset(tmp_path / "ds")
    examples = builder.episode(ds.episode(0), ds.episode_extra(0), "pointnav")
    codec = DiscreteActionCodec(vocab)
    assert [codec.decode(row).action for row in examples.targets] == [d.action for d in decisions]
    assert TrainingData([str(tmp_path / "ds")], builder, batch_size=2).batch_at(0)["image"].shape[0] == 2


def test_fallback_decisions_are_left_out(tmp_path):
    bag = tmp_path / "bag"
    decisions, _ = record_rollout(bag, [[1, 2, 3, 0]], fallback_at={1})  # the 2 did not parse
    assert [d.fallback for d in decisions] == [False, True, False, False]
    convert([bag], tmp_path / "ds")
    ep = open_dataset(tmp_path / "ds").episode(0)
    assert ep["action"].reshape(-1).tolist() == [d.action for d in decisions if not d.fallback]


def test_several_bags_append_to_one_dataset_and_frames_are_resized(tmp_path):
    record_rollout(tmp_path / "a", [[1, 0]])
    record_rollout(tmp_path / "b", [[2, 0]])
    summary = convert([tmp_path / "a"], tmp_path / "ds", image_size=(8, 8), fps=2)
    assert summary["episodes"] == 1
    assert (
        main([str(tmp_path / "b"), "--out", str(tmp_path / "ds"), "--image-size", "8x8", "--fps", "2"]) == 0
    )
    ds = open_dataset(tmp_path / "ds")
    assert ds.num_episodes == 2 and ds.episode(1)["observation.images.rgb"].shape[1:] == (8, 8, 3)
    assert [ds.episode_extra(i)["source_bag"] for i in range(2)] == [str(tmp_path / "a"), str(tmp_path / "b")]


def test_a_missing_frame_is_named_or_its_episode_skipped(tmp_path, caplog):
    bag = tmp_path / "bag"
    decisions, stamps = record_rollout(bag, [[1, 0], [2, 0]])
    victim = stamps[decisions[2].image_stamps_ns["rgb"]]  # episode 2's first frame
    shutil.rmtree(bag)
    record_rollout(bag, [[1, 0], [2, 0]], skip_frames={victim})
    with pytest.raises(
        BagConversionError, match=rf"episode {decisions[2].episode} step 0: .*{CAMERA}.* not in the bag"
    ):
        convert([bag], tmp_path / "ds")
    assert not (tmp_path / "ds" / "meta" / "info.json").exists()  # nothing half-written
    summary = convert([bag], tmp_path / "ds", skip_incomplete=True)
    assert summary["episodes"] == 1 and summary["skipped"][0]["episode"] == decisions[2].episode
    assert "skipping" in caplog.text


def test_bags_that_cannot_be_converted_say_why(tmp_path, capsys):
    with pytest.raises(BagConversionError, match="not a rosbag2 directory"):
        convert([tmp_path / "nothing"], tmp_path / "ds")
    bag = tmp_path / "bag"
    record_rollout(bag, [[1, 0]])
    (bag / "metadata.yaml").unlink()
    with pytest.raises(BagConversionError, match=r"uio2_ros\.bag recover"):
        convert([bag], tmp_path / "ds")

    other = tmp_path / "other"
    with BagRecorder(other, flush_interval_s=None) as rec:
        rec.write(
            "/chatter",
            1,
            make_message(rec.typestore, "std_msgs/msg/String", data="hi"),
            msgtype="std_msgs/msg/String",
        )
    with pytest.raises(BagConversionError, match=r"no decision records.*/chatter"):
        convert([other], tmp_path / "ds")

    bad = tmp_path / "bad"
    with BagRecorder(bad, flush_interval_s=None) as rec:
        rec.write(
            DECISIONS,
            5,
            make_message(rec.typestore, "std_msgs/msg/String", data='{"episode": 0}'),
            msgtype="std_msgs/msg/String",
        )
    with pytest.raises(BagConversionError, match=r"bad decision record .* at 5 ns: .*missing"):
        convert([bad], tmp_path / "ds")
    assert main([str(bad), "--out", str(tmp_path / "ds")]) == 1
    assert "bad decision record" in capsys.readouterr().err


def test_vima_decisions_become_pick_and_place_frames(tmp_path):
    """Manipulation: two views, 12-number pose actions, the instruction as the task."""
    views = {"front": "/front/image_raw", "top": "/top/image_raw"}
    actions = [
        {
            "pose0_position": [0.3, -0.1],
            "pose0_rotation": [0, 0, 0, 1],
            "pose1_position": [0.6, 0.2],
            "pose1_rotation": [0, 0, 0.7071, 0.7071],
        },
        {
            "pose0_position": [0.5, 0.0],
            "pose0_rotation": [0, 0, 0, 1],
            "pose1_position": [0.4, -0.3],
            "pose1_rotation": [0, 0, 0, 1],
        },
    ]
    with BagRecorder(tmp_path / "bag", flush_interval_s=None) as rec:
        ts = rec.typestore
        for step, action in enumerate(actions):
            stamps = {}
            for v, (view, topic) in enumerate(views.items()):
                stamp = 1_000_000_000 * (step + 1) + v
                rec.write(
                    topic,
                    stamp,
                    image_message(ts, frame_at(10 * step + v), stamp_ns=stamp, encoding="bgr8"),
                    msgtype="sensor_msgs/msg/Image",
                    qos="sensor_data",
                )
                stamps[view] = stamp
            d = Decision(
                episode=3,
                step=step,
                family="vima",
                text="",
                fallback=False,
                action=action,
                instruction="put the red block in the bowl",
                image_topics=views,
                image_stamps_ns=stamps,
            )
            rec.write(
                DECISIONS,
                stamp,
                make_message(ts, "std_msgs/msg/String", data=d.to_json()),
                msgtype="std_msgs/msg/String",
            )
    out = tmp_path / "ds"
    assert convert([tmp_path / "bag"], out)["fps"] == 1
    ds = open_dataset(out)
    ep = ds.episode(0)
    assert str(ep["task"][0]) == "put the red block in the bowl"
    np.testing.assert_array_equal(ep["observation.images.top"][1], frame_at(11))
    np.testing.assert_array_equal(ep["observation.images.front"][0], frame_at(0))
    np.testing.assert_allclose(ep["action"][0][:4], [0.3, -0.1, 0, 0])
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["features"]["action"]["shape"] == [12]
