"""Rollout bags: round trips read back with `rosbags`, refusals, crash recovery, concurrent writers."""

from __future__ import annotations

import io
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from rosbags.rosbag2 import Reader, ReaderError
from rosbags.typesys import Stores, get_typestore

from uio2_ros.bag import (
    BagRecorder,
    RecoveryError,
    compressed_image_message,
    header,
    image_message,
    main,
    make_message,
    recover,
    typestore,
)

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # ros/uio2_ros: holds the uio2_ros package
TWIST = "geometry_msgs/msg/Twist"
STRING = "std_msgs/msg/String"
IMAGE = "sensor_msgs/msg/Image"
T0 = 1_700_000_000_000_000_000  # a realistic epoch stamp in ns


def _rgb(h: int = 6, w: int = 5) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _read(path: Path) -> tuple[dict, list[tuple[str, int, bytes]]]:
    """The bag's connections by topic and its messages (topic, stamp, raw CDR) in bag order."""
    with Reader(path) as reader:
        conns = {conn.topic: conn for conn in reader.connections}
        msgs = [(conn.topic, stamp, bytes(raw)) for conn, stamp, raw in reader.messages()]
    return conns, msgs


def _metadata(path: Path) -> dict:
    return yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]


def _strings(ts, msgs, topic: str) -> list[str]:
    return [ts.deserialize_cdr(raw, STRING).data for t, _, raw in msgs if t == topic]


def _reliability(conn) -> str:
    return conn.ext.offered_qos_profiles[0].reliability.name


# -- round trips ----------------------------------------------------------------------------------------
def test_round_trip_mcap_v9(tmp_path):
    path = tmp_path / "rollout"
    rgb = _rgb()
    with BagRecorder(path, flush_interval_s=0.05) as rec:
        ts = rec.typestore
        image = image_message(ts, rgb, stamp_ns=T0, frame_id="cam", step=rgb.shape[1] * 3 + 3)
        rec.write("/camera/image_raw", T0, image, msgtype=IMAGE, qos="sensor_data")
        rec.add_topic("/camera/compressed", "sensor_msgs/msg/CompressedImage", qos="sensor_data")
        rec.write("/camera/compressed", T0 + 1, compressed_image_message(ts, rgb, fmt="png", stamp_ns=T0))
        rec.add_topic("/cmd_vel", TWIST)
        rec.write("/cmd_vel", T0 + 2, make_message(ts, TWIST, linear={"x": 0.25}, angular={"z": -0.5}))
        raw_twist = ts.serialize_cdr(make_message(ts, TWIST, linear={"y": 1.5}), TWIST)
        rec.write("/cmd_vel", T0 + 3, raw_twist)
        rec.write(
            "/instruction", T0 + 4, make_message(ts, STRING, data="pick up the red block"), msgtype=STRING
        )
        assert rec.message_counts == {
            "/camera/image_raw": 1, "/camera/compressed": 1, "/cmd_vel": 2, "/instruction": 1,
        }  # fmt: skip
    assert rec.closed

    meta = _metadata(path)
    assert meta["version"] == 9
    assert meta["storage_identifier"] == "mcap"
    assert meta["relative_file_paths"] == ["rollout.mcap"]
    assert meta["message_count"] == 5

    ts = get_typestore(Stores.ROS2_JAZZY)
    conns, msgs = _read(path)
    assert {topic: conn.msgtype for topic, conn in conns.items()} == {
        "/camera/image_raw": IMAGE,
        "/camera/compressed": "sensor_msgs/msg/CompressedImage",
        "/cmd_vel": TWIST,
        "/instruction": STRING,
    }
    assert {topic: conn.msgcount for topic, conn in conns.items()} == {
        "/camera/image_raw": 1, "/camera/compressed": 1, "/cmd_vel": 2, "/instruction": 1,
    }  # fmt: skip
    assert [(topic, stamp) for topic, stamp, _ in msgs] == [
        ("/camera/image_raw", T0),
        ("/camera/compressed", T0 + 1),
        ("/cmd_vel", T0 + 2),
        ("/cmd_vel", T0 + 3),
        ("/instruction", T0 + 4),
    ]
    assert conns["/cmd_vel"].digest == ts.hash_rihs01(TWIST)
    assert _reliability(conns["/camera/image_raw"]) == "BEST_EFFORT"
    assert conns["/camera/image_raw"].ext.offered_qos_profiles[0].depth == 5
    assert _reliability(conns["/cmd_vel"]) == "RELIABLE"

    img = ts.deserialize_cdr(msgs[0][2], IMAGE)
    h, w = rgb.shape[:2]
    assert (img.height, img.width, img.encoding, img.step) == (h, w, "rgb8", w * 3 + 3)
    assert (img.header.stamp.sec, img.header.stamp.nanosec, img.header.frame_id) == (T0 // 10**9, 0, "cam")
    rows = np.asarray(img.data, np.uint8).reshape(h, img.step)
    np.testing.assert_array_equal(rows[:, : w * 3].reshape(h, w, 3), rgb)
    assert (rows[:, w * 3 :] == 0xAB).all()

    comp = ts.deserialize_cdr(msgs[1][2], "sensor_msgs/msg/CompressedImage")
    assert comp.format == "png"
    decoded = np.asarray(Image.open(io.BytesIO(np.asarray(comp.data, np.uint8).tobytes())).convert("RGB"))
    np.testing.assert_array_equal(decoded, rgb)

    first, second = (ts.deserialize_cdr(raw, TWIST) for _, _, raw in msgs[2:4])
    assert (first.linear.x, first.linear.y, first.angular.z) == (0.25, 0.0, -0.5)
    assert (second.linear.x, second.linear.y, second.angular.z) == (0.0, 1.5, 0.0)
    assert msgs[3][2] == bytes(raw_twist)  # raw CDR is stored as given
    assert ts.deserialize_cdr(msgs[4][2], STRING).data == "pick up the red block"


@pytest.mark.parametrize(("storage", "version"), [("mcap", 8), ("sqlite3", 9)])
def test_round_trip_other_versions_and_storages(tmp_path, storage, version):
    path = tmp_path / "bag"
    with BagRecorder(path, version=version, storage=storage, distro="humble", flush_interval_s=0.05) as rec:
        ts = rec.typestore
        for i in range(3):
            rec.write("/chatter", T0 + i, make_message(ts, STRING, data=f"hello {i}"), msgtype=STRING)
        rec.write(
            "/cmd_vel", T0 + 10, make_message(ts, TWIST, linear={"x": 0.1}), msgtype=TWIST, qos="sensor_data"
        )
    meta = _metadata(path)
    assert meta["version"] == version
    assert meta["storage_identifier"] == storage
    assert meta["relative_file_paths"] == [f"bag{'.mcap' if storage == 'mcap' else '.db3'}"]
    if version == 8:  # Humble's player parses the QoS profiles from a YAML string
        assert isinstance(meta["topics_with_message_count"][0]["topic_metadata"]["offered_qos_profiles"], str)

    conns, msgs = _read(path)
    assert {topic: conn.msgcount for topic, conn in conns.items()} == {"/chatter": 3, "/cmd_vel": 1}
    assert _strings(ts, msgs, "/chatter") == ["hello 0", "hello 1", "hello 2"]
    assert [stamp for _, stamp, _ in msgs] == [T0, T0 + 1, T0 + 2, T0 + 10]
    assert ts.deserialize_cdr(msgs[3][2], TWIST).linear.x == 0.1
    assert _reliability(conns["/cmd_vel"]) == "BEST_EFFORT"
    assert _reliability(conns["/chatter"]) == "RELIABLE"


def test_empty_existing_directory_is_accepted(tmp_path):
    path = tmp_path / "made_by_launch_file"
    path.mkdir()
    with BagRecorder(path, flush_interval_s=None) as rec:
        rec.write("/chatter", T0, make_message(rec.typestore, STRING, data="x"), msgtype=STRING)
    _, msgs = _read(path)
    assert [(topic, stamp) for topic, stamp, _ in msgs] == [("/chatter", T0)]


def test_empty_bag_closes_to_a_readable_bag(tmp_path):
    BagRecorder(tmp_path / "empty", flush_interval_s=None).close()
    conns, msgs = _read(tmp_path / "empty")
    assert (conns, msgs) == ({}, [])


# -- refusals -------------------------------------------------------------------------------------------
def test_refuses_a_non_empty_directory_and_leaves_it_untouched(tmp_path):
    path = tmp_path / "old_bag"
    path.mkdir()
    (path / "metadata.yaml").write_text("precious")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        BagRecorder(path)
    assert sorted(p.name for p in path.iterdir()) == ["metadata.yaml"]
    assert (path / "metadata.yaml").read_text() == "precious"


def test_refuses_an_existing_file_and_leaves_it_untouched(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("precious")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        BagRecorder(path)
    assert path.read_text() == "precious"


@pytest.mark.parametrize(
    "kwargs",
    [{"version": 7}, {"version": 10}, {"storage": "rosbag1"}, {"distro": "noetic"}, {"flush_interval_s": 0}],
)
def test_refuses_bad_settings_before_creating_anything(tmp_path, kwargs):
    with pytest.raises(ValueError, match=r"version|storage|distro|flush_interval_s"):
        BagRecorder(tmp_path / "bag", **kwargs)
    assert not (tmp_path / "bag").exists()


@pytest.fixture
def recorder(tmp_path):
    rec = BagRecorder(tmp_path / "bag", flush_interval_s=None)
    yield rec
    rec.close()


@pytest.mark.parametrize("topic", ["cmd_vel", "/1st", "/a//b", "/a/", "/a-b", "/", "", "/a b", None])
def test_refuses_bad_topic_names(recorder, topic):
    with pytest.raises(ValueError, match="bad topic name"):
        recorder.add_topic(topic, TWIST)
    with pytest.raises(ValueError, match="bad topic name"):
        recorder.write(topic, T0, make_message(recorder.typestore, TWIST), msgtype=TWIST)
    assert recorder.topics == {}


def test_refuses_unknown_and_malformed_message_types(recorder):
    with pytest.raises(ValueError, match="unknown message type"):
        recorder.add_topic("/x", "uio2_msgs/msg/Action")
    with pytest.raises(ValueError, match="bad message type"):
        recorder.add_topic("/x", "geometry_msgs/Twist")
    with pytest.raises(ValueError, match="unknown QoS"):
        recorder.add_topic("/x", TWIST, qos="fast")
    assert recorder.topics == {}


def test_refuses_unregistered_topic_and_wrong_types(tmp_path):
    path = tmp_path / "bag"
    rec = BagRecorder(path, flush_interval_s=None)
    ts = rec.typestore
    twist = make_message(ts, TWIST, linear={"x": 1.0})
    with pytest.raises(ValueError, match="not registered"):
        rec.write("/cmd_vel", T0, twist)
    rec.add_topic("/cmd_vel", TWIST)
    rec.add_topic("/cmd_vel", TWIST)  # the same registration again is a no-op
    with pytest.raises(ValueError, match="already registered"):
        rec.add_topic("/cmd_vel", STRING)
    with pytest.raises(ValueError, match="already registered"):
        rec.add_topic("/cmd_vel", TWIST, qos="sensor_data")
    with pytest.raises(ValueError, match="records geometry_msgs/msg/Twist, got a std_msgs/msg/String"):
        rec.write("/cmd_vel", T0, make_message(ts, STRING, data="go"))
    with pytest.raises(ValueError, match="records geometry_msgs/msg/Twist, not std_msgs/msg/String"):
        rec.write("/cmd_vel", T0, twist, msgtype=STRING)
    with pytest.raises(ValueError, match="not CDR"):
        rec.write("/cmd_vel", T0, b'{"linear": {"x": 1.0}}')
    with pytest.raises(ValueError, match="not CDR"):
        rec.write("/cmd_vel", T0, b"")
    with pytest.raises(TypeError, match="CDR bytes or a rosbags message"):
        rec.write("/cmd_vel", T0, {"linear": {"x": 1.0}})
    for stamp in (True, 1.5, "1", np.float64(3.0)):
        with pytest.raises(TypeError, match="must be an int"):
            rec.write("/cmd_vel", stamp, twist)
    for stamp in (-1, 2**63):
        with pytest.raises(ValueError, match="outside"):
            rec.write("/cmd_vel", stamp, twist)
    rec.write("/cmd_vel", np.int64(T0), twist)  # numpy ints are fine
    assert rec.message_counts == {"/cmd_vel": 1}
    rec.close()
    rec.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        rec.write("/cmd_vel", T0 + 1, twist)
    with pytest.raises(RuntimeError, match="closed"):
        rec.add_topic("/other", TWIST)
    rec.flush()  # a no-op once closed

    conns, msgs = _read(path)  # none of the refused messages reached the bag
    assert list(conns) == ["/cmd_vel"]
    assert [(topic, stamp) for topic, stamp, _ in msgs] == [("/cmd_vel", T0)]
    assert ts.deserialize_cdr(msgs[0][2], TWIST).linear.x == 1.0


# -- message helpers ------------------------------------------------------------------------------------
def test_make_message_defaults_nesting_and_refusals():
    ts = typestore("humble")
    twist = make_message(ts, TWIST, linear={"x": 0.2})
    assert (twist.linear.x, twist.linear.y, twist.angular.z) == (0.2, 0.0, 0.0)
    pose = make_message(ts, "geometry_msgs/msg/PoseWithCovariance", covariance=list(range(36)))
    assert pose.covariance.dtype == np.float64
    assert pose.covariance[35] == 35.0
    assert pose.pose.orientation.w == 0.0
    with pytest.raises(ValueError, match="exactly 36"):
        make_message(ts, "geometry_msgs/msg/PoseWithCovariance", covariance=[0.0] * 35)
    with pytest.raises(ValueError, match="has no field"):
        make_message(ts, TWIST, linar={"x": 0.2})
    with pytest.raises(ValueError, match="unknown message type"):
        make_message(ts, "geometry_msgs/msg/Twistt")
    with pytest.raises(ValueError, match="unknown ROS distro"):
        typestore("rolling-ridley")

    head = header(ts, 3 * 10**9 + 7, "base_link")
    assert (head.stamp.sec, head.stamp.nanosec, head.frame_id) == (3, 7, "base_link")


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_image_message_encodings(encoding):
    ts = typestore()
    rgb = _rgb(3, 4)
    msg = image_message(ts, rgb, encoding=encoding, step=40)
    channels = {"mono8": 1, "rgb8": 3, "bgr8": 3}.get(encoding, 4)
    pixels = np.asarray(msg.data).reshape(3, 40)[:, : 4 * channels].reshape(3, 4, channels)
    expected = rgb[..., :1] if encoding == "mono8" else rgb[..., ::-1] if encoding == "bgr8" else rgb
    if encoding == "bgra8":
        expected = rgb[..., ::-1]
    np.testing.assert_array_equal(pixels[..., : expected.shape[2]], expected)
    if channels == 4:
        assert (pixels[..., 3] == 255).all()
    with pytest.raises(ValueError, match="shorter than a row"):
        image_message(ts, rgb, encoding=encoding, step=4 * channels - 1)


def test_image_message_refuses_bad_input():
    ts = typestore()
    with pytest.raises(ValueError, match="uint8"):
        image_message(ts, np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="HxWx3"):
        image_message(ts, np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="unsupported encoding"):
        image_message(ts, _rgb(), encoding="yuv422")


# -- crash recovery -------------------------------------------------------------------------------------
_CRASHING_RECORDER = textwrap.dedent(
    """
    import sys, time
    from uio2_ros.bag import BagRecorder, make_message

    path, storage = sys.argv[1], sys.argv[2]
    version, n, T0 = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    rec = BagRecorder(path, storage=storage, version=version, flush_interval_s=0.05)
    ts = rec.typestore
    rec.add_topic("/cmd_vel", "geometry_msgs/msg/Twist", qos="sensor_data")
    for i in range(n):
        if i % 3 == 2:
            rec.write("/cmd_vel", T0 + i, make_message(ts, "geometry_msgs/msg/Twist", linear={"x": i / 8}))
        else:
            msg = make_message(ts, "std_msgs/msg/String", data=f"message {i}")
            rec.write("/chatter", T0 + i, msg, msgtype="std_msgs/msg/String")
    rec.flush()
    print("flushed", flush=True)
    time.sleep(60)
    """
)


def _expected_crash_messages(n: int) -> list[tuple[str, int, object]]:
    return [
        ("/cmd_vel", T0 + i, i / 8) if i % 3 == 2 else ("/chatter", T0 + i, f"message {i}") for i in range(n)
    ]


def _decoded(ts, msgs) -> list[tuple[str, int, object]]:
    def value(topic: str, raw: bytes) -> object:
        if topic == "/cmd_vel":
            return ts.deserialize_cdr(raw, TWIST).linear.x
        return ts.deserialize_cdr(raw, STRING).data

    return [(topic, stamp, value(topic, raw)) for topic, stamp, raw in msgs]


def _crash_recording(path: Path, storage: str, version: int, n: int) -> None:
    """Run a recorder in a child process and SIGKILL it once it has flushed `n` messages."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_RECORDER, str(path), storage, str(version), str(n), str(T0)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        assert line.strip() == "flushed", (
            f"the recorder did not flush: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        )
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize(("storage", "version", "suffix"), [("mcap", 9, ".mcap"), ("sqlite3", 8, ".db3")])
def test_recover_after_sigkill_keeps_everything_flushed(tmp_path, storage, version, suffix):
    path, n = tmp_path / "killed", 40
    _crash_recording(path, storage, version, n)
    assert not (path / "metadata.yaml").exists()
    assert (path / f"killed{suffix}").is_file()
    with pytest.raises((ReaderError, FileNotFoundError), match="metadata"), Reader(path):
        pass

    summary = recover(path)
    assert summary["status"] == "recovered"
    assert summary["storage"] == storage
    assert summary["version"] == version  # taken from how the QoS profiles were written
    assert summary["messages"] == n
    assert summary["topics"] == {"/cmd_vel": n // 3, "/chatter": n - n // 3}
    assert (summary["lost_bytes"], summary["bad_chunks"], summary["orphan_messages"]) == (0, 0, 0)
    damaged = path / f"killed{suffix}.damaged"
    assert summary["damaged"] == str(damaged)
    assert damaged.is_file()
    assert not (path / ".recover").exists()
    assert _metadata(path)["version"] == version
    assert _metadata(path)["storage_identifier"] == storage

    ts = get_typestore(Stores.ROS2_JAZZY)
    conns, msgs = _read(path)
    assert _decoded(ts, msgs) == _expected_crash_messages(n)
    # the type hashes are rebuilt from the definitions stored in the data file
    assert conns["/cmd_vel"].digest == ts.hash_rihs01(TWIST)
    assert conns["/chatter"].digest == ts.hash_rihs01(STRING)
    assert _reliability(conns["/cmd_vel"]) == "BEST_EFFORT"
    assert _reliability(conns["/chatter"]) == "RELIABLE"

    assert recover(path) == {"path": str(path), "status": "intact"}
    assert damaged.is_file()


def test_recover_cli(tmp_path, capsys):
    path = tmp_path / "killed"
    _crash_recording(path, "mcap", 9, 10)
    assert main(["recover", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["status"], summary["messages"]) == ("recovered", 10)
    assert len(_read(path)[1]) == 10

    empty = tmp_path / "no_data"
    empty.mkdir()
    assert main(["recover", str(empty)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error:")
    assert "no .mcap or .db3 data file" in captured.err
    assert main(["recover", str(tmp_path / "missing")]) == 1
    assert "not a bag directory" in capsys.readouterr().err
    with pytest.raises(RecoveryError, match="nothing to recover"):
        recover(empty)


def _snapshot(rec: BagRecorder, dest: Path) -> Path:
    """What a crash right now would leave: a copy of the live recorder's data file, no metadata.yaml."""
    dest.mkdir()
    data = next(rec.path.glob("*.mcap"))
    shutil.copy(data, dest / data.name)
    return dest


def test_recover_a_recorder_killed_before_its_first_flush(tmp_path):
    rec = BagRecorder(tmp_path / "live", flush_interval_s=None)
    rec.write("/chatter", T0, make_message(rec.typestore, STRING, data="never flushed"), msgtype=STRING)
    crashed = _snapshot(rec, tmp_path / "crashed")
    rec.close()
    assert (crashed / "live.mcap").stat().st_size < 8  # not even the MCAP magic had reached the file
    summary = recover(crashed)
    assert (summary["status"], summary["messages"], summary["topics"]) == ("recovered", 0, {})
    assert _read(crashed) == ({}, [])


def test_recover_a_v8_snapshot_with_late_topics_and_full_chunks(tmp_path):
    rec = BagRecorder(tmp_path / "live", version=8, flush_interval_s=None)
    ts = rec.typestore
    rec.write("/chatter", T0, make_message(ts, STRING, data="first"), msgtype=STRING)
    rec.flush()
    rgb = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)  # 900 KiB a frame
    for i in range(1, 4):  # the second frame fills a chunk (1 MiB), which rosbags then writes by itself
        image = image_message(ts, rgb, stamp_ns=T0 + i)
        rec.write("/camera/image_raw", T0 + i, image, msgtype=IMAGE, qos="sensor_data")
    rec.write("/cmd_vel", T0 + 4, make_message(ts, TWIST, linear={"x": 0.3}), msgtype=TWIST)
    rec.flush()
    rec.write("/chatter", T0 + 5, make_message(ts, STRING, data="unflushed"))  # the crash loses this one
    crashed = _snapshot(rec, tmp_path / "crashed")
    rec.close()

    summary = recover(crashed)
    assert (summary["version"], summary["lost_bytes"]) == (8, 0)
    assert summary["topics"] == {"/chatter": 1, "/camera/image_raw": 3, "/cmd_vel": 1}
    assert _metadata(crashed)["version"] == 8
    conns, msgs = _read(crashed)
    _, live = _read(tmp_path / "live")
    assert msgs == live[:5]
    assert _reliability(conns["/camera/image_raw"]) == "BEST_EFFORT"


def test_recover_refuses_a_file_that_is_not_mcap(tmp_path):
    path = tmp_path / "bag"
    path.mkdir()
    (path / "bag.mcap").write_bytes(b"not an mcap file at all")
    with pytest.raises(RecoveryError, match="not an MCAP file"):
        recover(path)
    assert sorted(p.name for p in path.iterdir()) == ["bag.mcap"]  # untouched, no scratch left


def _data_section_end(data: bytes) -> int:
    """The offset of the MCAP DataEnd record (where the summary starts)."""
    pos = 8
    while data[pos] != 0x0F:
        pos += 9 + struct.unpack_from("<Q", data, pos + 1)[0]
    return pos


@pytest.mark.parametrize("flush_every", [None, 10], ids=["one_chunk", "chunk_per_10"])
def test_recover_truncated_mcap_keeps_a_prefix_of_whole_messages(tmp_path, flush_every):
    total = 60
    original = tmp_path / "original"
    with BagRecorder(original, flush_interval_s=None) as rec:
        ts = rec.typestore
        for i in range(total):
            rec.write("/chatter", T0 + i, make_message(ts, STRING, data=f"message {i:03d}"), msgtype=STRING)
            if flush_every and i % flush_every == flush_every - 1:
                rec.flush()
    data = (original / "original.mcap").read_bytes()
    cut = _data_section_end(data) // 2 + 3  # in the middle of the data section, mid-record

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "broken.mcap").write_bytes(data[:cut])
    summary = recover(broken)
    assert summary["status"] == "recovered"
    k = summary["messages"]
    assert 0 < k < total
    assert 0 < summary["lost_bytes"] <= cut
    assert (broken / "broken.mcap.damaged").read_bytes() == data[:cut]
    _, msgs = _read(broken)
    assert _strings(ts, msgs, "/chatter") == [f"message {i:03d}" for i in range(k)]
    assert [stamp for _, stamp, _ in msgs] == [T0 + i for i in range(k)]
    # nothing whole was dropped: the next message ends past the cut
    assert data.index(f"message {k:03d}".encode()) + len(f"message {k:03d}") > cut - 4

    (broken / "metadata.yaml").unlink()  # recover again from the `.damaged` original: same result
    assert recover(broken, keep_damaged=False)["messages"] == k
    assert not (broken / "broken.mcap.damaged").exists()


# -- threads --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_concurrent_writers_with_a_fast_flush_thread(tmp_path, storage, caplog):
    path = tmp_path / "threads"
    rec = BagRecorder(path, storage=storage, flush_interval_s=0.01)
    ts = rec.typestore
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            start.wait()
            for j in range(200):
                msg = make_message(ts, STRING, data=f"{t}:{j}")
                rec.write(f"/writer_{t}", T0 + j * 4 + t, msg, msgtype=STRING)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rec.close()
    assert errors == []
    assert not [r for r in caplog.records if "flushing" in r.getMessage()]  # the flush thread never failed

    conns, msgs = _read(path)
    assert len(msgs) == 800
    assert {topic: conn.msgcount for topic, conn in conns.items()} == {f"/writer_{t}": 200 for t in range(4)}
    for t in range(4):
        assert _strings(ts, msgs, f"/writer_{t}") == [f"{t}:{j}" for j in range(200)]
    assert [stamp for _, stamp, _ in msgs] == sorted(stamp for _, stamp, _ in msgs)
