"""Robot rollouts (rosbag2 directories the policy node recorded) -> our LeRobot-v3-layout datasets.

The node records every camera frame it received and one decision record per policy step
(`decision.Decision`, JSON on `~/decision`). The decision names the frames it used by header stamp,
the point goal it computed from odometry, and the action it commanded, so each non-fallback decision
becomes exactly one dataset frame: the observation the policy saw and the action the robot executed.
The result is what `uio2 record` writes for simulated rollouts, so `uio2 train` reads both alike.

    python -m uio2_ros.bag_to_dataset BAG [BAG ...] --out DATASET     (or: ros2 run uio2_ros bag_to_dataset)

Several bags append to one dataset. A decision whose frame is missing from the bag (a crash cut it
off, or the camera topic was not recorded) is an error naming it; `--skip-incomplete` drops that
whole episode with a warning instead. Fallback decisions commanded nothing and are left out.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uio2_ros.bag import typestore
from uio2_ros.decision import Decision
from uio2_ros.images import ImageError, compressed_to_rgb, image_to_rgb, resize
from uio2_ros.runner import RunnerConfig, spaces_for

log = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
DECISION_SUFFIX = "/decision"
POINTNAV_TASK = "navigate to the point goal"


class BagConversionError(ValueError):
    """A bag that cannot be turned into dataset episodes; the message names the bag and what is wrong."""


@dataclass
class _Episode:
    index: int  # the node's episode counter
    family: str
    instruction: str
    decisions: list[Decision] = field(default_factory=list)


def _open(path: Path):
    from rosbags.rosbag2 import Reader

    if not path.is_dir():
        raise BagConversionError(f"{path} is not a rosbag2 directory")
    if not (path / "metadata.yaml").is_file():
        raise BagConversionError(
            f"{path} has no metadata.yaml (the recorder did not close, e.g. after a crash); "
            f"run `python -m uio2_ros.bag recover {path}` first"
        )
    try:
        reader = Reader(path)
        reader.open()
    except Exception as err:  # rosbags raises its own ReaderError subclasses
        raise BagConversionError(f"cannot open the bag {path}: {err}") from err
    return reader


def _decision_connections(reader: Any, path: Path, topic: str | None) -> list[Any]:
    strings = [c for c in reader.connections if c.msgtype == "std_msgs/msg/String"]
    if topic is not None:
        found = [c for c in strings if c.topic == topic]
        if not found:
            raise BagConversionError(f"{path} has no std_msgs/String topic {topic!r}")
        return found
    found = [c for c in strings if c.topic.endswith(DECISION_SUFFIX)]
    if not found:
        topics = sorted({c.topic for c in reader.connections})
        raise BagConversionError(
            f"{path} holds no decision records (a std_msgs/String topic ending in {DECISION_SUFFIX!r}); "
            f"its topics are {topics}. Was it recorded by the uio2_ros policy node?"
        )
    if len({c.topic for c in found}) > 1:
        raise BagConversionError(
            f"{path} has several decision topics {sorted({c.topic for c in found})}; pick one with "
            "--decision-topic"
        )
    return found


def read_episodes(reader: Any, path: Path, decision_topic: str | None = None) -> list[_Episode]:
    """The bag's decision records grouped into episodes, in recording order."""
    store = typestore()  # std_msgs/String is the same in every distro
    episodes: dict[int, _Episode] = {}
    for conn, stamp, raw in reader.messages(connections=_decision_connections(reader, path, decision_topic)):
        text = store.deserialize_cdr(raw, conn.msgtype).data
        try:
            decision = Decision.from_json(text)
        except (TypeError, ValueError) as err:
            raise BagConversionError(
                f"{path}: bad decision record on {conn.topic} at {stamp} ns: {err}"
            ) from err
        ep = episodes.get(decision.episode)
        if ep is None:
            ep = episodes[decision.episode] = _Episode(
                decision.episode, decision.family, decision.instruction
            )
        if decision.family != ep.family:
            raise BagConversionError(
                f"{path}: episode {decision.episode} mixes {ep.family} and {decision.family} decisions"
            )
        ep.decisions.append(decision)
    return list(episodes.values())


def _load_frames(reader: Any, wanted: dict[str, set[int]]) -> dict[tuple[str, int], np.ndarray]:
    """RGB frames of the wanted (topic, header stamp) pairs; one pass over the image topics."""
    store = typestore()  # Image / CompressedImage are the same in every distro
    conns = [c for c in reader.connections if c.topic in wanted and c.msgtype in IMAGE_TYPES]
    frames: dict[tuple[str, int], np.ndarray] = {}
    for conn, _stamp, raw in reader.messages(connections=conns):
        msg = store.deserialize_cdr(raw, conn.msgtype)
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        if stamp not in wanted[conn.topic] or (conn.topic, stamp) in frames:
            continue
        try:
            rgb = compressed_to_rgb(msg) if conn.msgtype.endswith("CompressedImage") else image_to_rgb(msg)
        except ImageError:  # the node dropped it too; a decision that names it fails below
            continue
        frames[(conn.topic, stamp)] = rgb
    return frames


def _observation(
    decision: Decision,
    frames: dict[tuple[str, int], np.ndarray],
    size: tuple[int, int],
    views: tuple[str, ...],
) -> dict[str, Any]:
    rgb = {}
    for view in views:
        key = (decision.image_topics[view], int(decision.image_stamps_ns[view]))
        image = frames[key]
        rgb[view] = image if image.shape[:2] == size else resize(image, *size)
    if decision.family == "vima":
        return {"rgb": {v: img.transpose(2, 0, 1) for v, img in rgb.items()}, "ee": 0}
    return {"rgb": rgb["rgb"], "pointgoal_with_gps_compass": np.asarray(decision.pointgoal, np.float32)}


def _action(decision: Decision) -> Any:
    if isinstance(decision.action, dict):
        return {k: np.asarray(v, np.float32) for k, v in decision.action.items()}
    return int(decision.action)


def _missing(decision: Decision, frames: dict[tuple[str, int], np.ndarray]) -> str:
    """What this decision lacks to become a frame ('' when nothing)."""
    if set(decision.image_topics) != set(decision.image_stamps_ns) or not decision.image_topics:
        return f"names no camera frame (image_topics {decision.image_topics})"
    for view, topic in decision.image_topics.items():
        stamp = int(decision.image_stamps_ns[view])
        if (topic, stamp) not in frames:
            return f"its {view} frame ({topic} stamped {stamp} ns) is not in the bag"
    if decision.family == "pointnav" and decision.pointgoal is None:
        return "has no point goal"
    return ""


def _estimate_fps(decisions: list[Decision], default: int) -> int:
    """The policy's decision rate: decisions carry the frame stamps they used."""
    stamps = [min(int(s) for s in d.image_stamps_ns.values()) for d in decisions if d.image_stamps_ns]
    gaps = np.diff(np.asarray(stamps, np.int64)) / 1e9
    gaps = gaps[gaps > 0]
    if gaps.size == 0:
        return default
    return max(1, round(1.0 / float(np.median(gaps))))


def convert(
    bags: Sequence[str | Path],
    out: str | Path,
    *,
    fps: int | None = None,
    image_size: tuple[int, int] | None = None,
    decision_topic: str | None = None,
    skip_incomplete: bool = False,
    robot_type: str = "ros2",
) -> dict[str, Any]:
    """Append one dataset episode per recorded episode of each bag to the dataset at `out`.

    `image_size` (H, W) is what frames are resized to (default: the first used frame's size; the
    node's `image_height`/`image_width` resizing happens after recording). Returns a JSON summary.
    """
    from agent.recording import TrajectoryRecorder
    from training.features import features_for, frame_from

    plan = []  # (bag, episodes, frames)
    for bag in bags:
        path = Path(bag)
        reader = _open(path)
        try:
            episodes = read_episodes(reader, path, decision_topic)
            wanted: dict[str, set[int]] = defaultdict(set)
            for ep in episodes:
                for d in ep.decisions:
                    for view, topic in d.image_topics.items():
                        if view in d.image_stamps_ns:
                            wanted[topic].add(int(d.image_stamps_ns[view]))
            frames = _load_frames(reader, wanted)
        finally:
            reader.close()
        plan.append((path, episodes, frames))

    families = {ep.family for _, episodes, _ in plan for ep in episodes}
    if len(families) > 1:
        raise BagConversionError(
            f"the bags mix families {sorted(families)}; convert them to separate datasets"
        )
    summary: dict[str, Any] = {"out": str(out), "bags": [], "episodes": 0, "frames": 0, "skipped": []}
    kept: list[tuple[Path, _Episode, list[Decision], dict]] = []
    for path, episodes, frames in plan:
        for ep in episodes:
            decisions = [d for d in ep.decisions if not d.fallback]
            problems = [(d, why) for d in decisions if (why := _missing(d, frames))]
            if problems:
                d, why = problems[0]
                message = (
                    f"{path}: episode {ep.index} step {d.step}: the decision {why} "
                    f"({len(problems)} of {len(decisions)} decisions incomplete)"
                )
                if not skip_incomplete:
                    raise BagConversionError(message + "; pass --skip-incomplete to drop such episodes")
                log.warning("skipping: %s", message)
                summary["skipped"].append({"bag": str(path), "episode": ep.index, "reason": why})
                continue
            if decisions:
                kept.append((path, ep, decisions, frames))
        summary["bags"].append(str(path))
    if not kept:
        raise BagConversionError(f"no episode with a commanded action in {[str(b) for b in bags]}")

    family = kept[0][1].family
    views = tuple(kept[0][2][0].image_topics)
    if image_size is None:
        first = kept[0][2][0]
        image_size = kept[0][3][(first.image_topics[views[0]], int(first.image_stamps_ns[views[0]]))].shape[
            :2
        ]
    cfg = RunnerConfig(family=family, views=views)
    obs_space, action_space = spaces_for(cfg, tuple(image_size))
    rate = fps or _estimate_fps([d for _, _, ds, _ in kept for d in ds], default=2)
    summary["fps"], summary["image_size"] = rate, list(image_size)

    with TrajectoryRecorder(
        out, rate, features_for(obs_space, action_space), robot_type=robot_type
    ) as recorder:
        for path, ep, decisions, frames in kept:
            if tuple(decisions[0].image_topics) != views:
                raise BagConversionError(
                    f"{path}: episode {ep.index} uses views {tuple(decisions[0].image_topics)}, "
                    f"the dataset {views}"
                )
            task = ep.instruction or (POINTNAV_TASK if family == "pointnav" else "")
            recorder.start_episode(
                task,
                {"source_bag": str(path), "ros_episode": ep.index, "image_topics": decisions[0].image_topics},
            )
            try:
                for i, d in enumerate(decisions):
                    last = i == len(decisions) - 1
                    stopped = family == "pointnav" and d.action == 0
                    recorder.add_frame(
                        frame_from(
                            _observation(d, frames, tuple(image_size), views),
                            _action(d),
                            0.0,
                            stopped,
                            last and not stopped,
                            False,
                            task=task,
                        )
                    )
            except Exception:
                recorder.discard_episode()
                raise
            recorder.end_episode({"num_steps": len(decisions)})
            summary["episodes"] += 1
            summary["frames"] += len(decisions)
    return summary


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must look like 64x64, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"image size must be positive, got {text!r}")
    return h, w


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bag_to_dataset", description=__doc__.splitlines()[0])
    parser.add_argument("bags", nargs="+", help="rosbag2 directories recorded by the policy node")
    parser.add_argument("--out", required=True, help="dataset directory (created, or appended to)")
    parser.add_argument("--fps", type=int, default=None, help="dataset fps (default: the decision rate)")
    parser.add_argument("--image-size", type=_size, default=None, help="HxW frames are resized to")
    parser.add_argument("--decision-topic", default=None, help="default: the one topic ending in /decision")
    parser.add_argument(
        "--skip-incomplete",
        action="store_true",
        help="drop episodes whose frames are missing (with a warning) instead of failing",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        summary = convert(
            args.bags,
            args.out,
            fps=args.fps,
            image_size=args.image_size,
            decision_topic=args.decision_topic,
            skip_incomplete=args.skip_incomplete,
        )
    except (BagConversionError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
