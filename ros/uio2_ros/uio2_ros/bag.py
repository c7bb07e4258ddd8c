"""Record robot rollouts as rosbag2 directories (metadata.yaml + .mcap) with `rosbags`, no ROS install.

Why rosbags: the same code runs inside the policy node on any distro, in CI without ROS, and in the
converter; the bags it writes play with `ros2 bag play` and open in Foxglove (MCAP storage). Metadata
version 9 suits Jazzy and later; version 8 writes `offered_qos_profiles` as a YAML string, the form
Humble's player can parse (inferred from rosbag2#2013, not tried on a real Humble).

Crash safety. rosbags writes the MCAP summary and `metadata.yaml` only in `close()`, and keeps the
current chunk (up to 1 MiB) in memory; its sqlite3 storage commits only at close too. So `BagRecorder`
flushes on a timer (`flush_interval_s`): each flush ends the MCAP chunk and hands it to the OS (and to
the disk with `fsync=True`), or commits the sqlite3 transaction. A killed recorder therefore loses at
most the last interval of messages, and leaves a data file without `metadata.yaml`, which ROS tools
and `rosbags` refuse to open. `recover(path)` (CLI: `python -m uio2_ros.bag recover PATH`) rebuilds a
complete bag from every whole message in that file and keeps the damaged original beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import struct
import sys
import threading
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.interfaces import (
    Connection,
    Nodetype,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader, StoragePlugin, Writer, WriterError
from rosbags.rosbag2.metadata import parse_qos
from rosbags.rosbag2.storage_mcap import McapWriter
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

log = logging.getLogger(__name__)

DISTROS = {
    "humble": Stores.ROS2_HUMBLE,
    "iron": Stores.ROS2_IRON,
    "jazzy": Stores.ROS2_JAZZY,
    "kilted": Stores.ROS2_KILTED,
}
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
_DATA_SUFFIX = {"mcap": ".mcap", "sqlite3": ".db3"}
_TOPIC_RE = re.compile(r"^(/[A-Za-z_][A-Za-z0-9_]*)+$")
_MSGTYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*/msg/[A-Za-z][A-Za-z0-9_]*$")
RECOVER_DIR = ".recover"  # scratch space inside the bag directory while `recover` rebuilds it
DAMAGED_SUFFIX = ".damaged"


def _profile(reliability: QosReliability, depth: int) -> Qos:
    zero = QosTime(0, 0)  # 0 = the RMW default: no deadline, no lifespan, default lease
    return Qos(
        QosHistory.KEEP_LAST, depth, reliability, QosDurability.VOLATILE, zero, zero,
        QosLiveliness.AUTOMATIC, zero, False,
    )  # fmt: skip


# What `ros2 bag play` should offer on replay: it picks reliability/durability from these.
QOS_PROFILES: dict[str, Qos] = {
    "reliable": _profile(QosReliability.RELIABLE, 10),  # rclpy's default publisher QoS
    "sensor_data": _profile(QosReliability.BEST_EFFORT, 5),  # rclpy.qos.qos_profile_sensor_data
}


# -- messages without ROS -------------------------------------------------------------------------------
def typestore(distro: str = "jazzy") -> Typestore:
    """The standard message types of a ROS 2 distro (a fresh store: callers may register more)."""
    try:
        return get_typestore(DISTROS[distro])
    except KeyError:
        raise ValueError(f"unknown ROS distro {distro!r}; expected one of {sorted(DISTROS)}") from None


def _numpy_dtype(base: str) -> np.dtype | None:
    """rosbags' numpy dtype for arrays of a primitive (None: strings, kept as Python lists)."""
    if base in ("string", "wstring"):
        return None
    return np.dtype({"bool": "bool_", "char": "uint8"}.get(base, base))


def _default(ts: Typestore, desc: tuple[Any, Any]) -> Any:
    kind, spec = desc
    if kind == Nodetype.BASE:
        base = spec[0]
        if base in ("string", "wstring"):
            return ""
        if base == "bool":
            return False
        return 0.0 if base.startswith("float") else 0
    if kind == Nodetype.NAME:
        return make_message(ts, spec)
    sub, size = spec
    dtype = _numpy_dtype(sub[1][0]) if sub[0] == Nodetype.BASE else None
    count = size if kind == Nodetype.ARRAY else 0
    if dtype is not None:
        return np.zeros(count, dtype)
    return [_default(ts, sub) for _ in range(count)]


def _coerce(ts: Typestore, desc: tuple[Any, Any], value: Any, where: str) -> Any:
    """A field value in the form rosbags serializes: dicts become messages, numeric lists arrays."""
    kind, spec = desc
    if kind == Nodetype.NAME:
        return make_message(ts, spec, **value) if isinstance(value, dict) else value
    if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
        sub, size = spec
        if sub[0] == Nodetype.BASE and (dtype := _numpy_dtype(sub[1][0])) is not None:
            value = np.asarray(value, dtype).reshape(-1)
        else:
            value = [_coerce(ts, sub, v, where) for v in value]
        if kind == Nodetype.ARRAY and len(value) != size:
            raise ValueError(f"{where} needs exactly {size} values, got {len(value)}")
    return value


def make_message(ts: Typestore, msgtype: str, **fields: Any) -> Any:
    """A message object of `msgtype`; omitted fields take ROS defaults (0, "", empty, nested defaults).

    Nested messages may be given as dicts and numeric arrays as lists, e.g.
    `make_message(ts, "geometry_msgs/msg/Twist", linear={"x": 0.2})`.
    """
    if msgtype not in ts.fielddefs:
        raise ValueError(f"unknown message type {msgtype!r} in this typestore")
    names = [name for name, _ in ts.fielddefs[msgtype][1]]
    unknown = sorted(set(fields) - set(names))
    if unknown:
        raise ValueError(f"{msgtype} has no field(s) {unknown}; its fields are {names}")
    values = {}
    for name, desc in ts.fielddefs[msgtype][1]:
        where = f"{msgtype}.{name}"
        values[name] = _coerce(ts, desc, fields[name], where) if name in fields else _default(ts, desc)
    return ts.types[msgtype](**values)


def header(ts: Typestore, stamp_ns: int, frame_id: str = "") -> Any:
    """A `std_msgs/msg/Header` stamped `stamp_ns` nanoseconds after the epoch."""
    sec, nanosec = divmod(int(stamp_ns), 10**9)
    return make_message(ts, "std_msgs/msg/Header", stamp={"sec": sec, "nanosec": nanosec}, frame_id=frame_id)


_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def image_message(
    ts: Typestore,
    rgb: np.ndarray,
    *,
    encoding: str = "rgb8",
    stamp_ns: int = 0,
    frame_id: str = "camera",
    step: int | None = None,
) -> Any:
    """A `sensor_msgs/msg/Image` showing the HWC uint8 RGB image `rgb` (HW for mono8), in `encoding`.

    `step` > width * channels pads every row (filled with 0xAB) as some camera drivers do; readers
    must honour `step`, so tests use it.
    """
    if encoding not in _CHANNELS:
        raise ValueError(f"unsupported encoding {encoding!r}; expected one of {sorted(_CHANNELS)}")
    img = np.asarray(rgb)
    if img.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {img.dtype}")
    if encoding == "mono8":
        pixels = img if img.ndim == 2 else img[..., 0]
    else:
        if img.ndim != 3 or img.shape[2] not in (3, 4):
            raise ValueError(f"{encoding} needs an HxWx3 RGB image, got shape {img.shape}")
        pixels = img[..., :3]
        if encoding.startswith("bgr"):
            pixels = pixels[..., ::-1]
        if encoding.endswith("a8"):
            alpha = img[..., 3:] if img.shape[2] == 4 else np.full((*img.shape[:2], 1), 255, np.uint8)
            pixels = np.concatenate([pixels, alpha], axis=2)
    h, w = pixels.shape[:2]
    row = w * _CHANNELS[encoding]
    step = row if step is None else int(step)
    if step < row:
        raise ValueError(f"step {step} is shorter than a row ({row} bytes)")
    data = np.full((h, step), 0xAB, np.uint8)
    data[:, :row] = pixels.reshape(h, row)
    return make_message(
        ts, "sensor_msgs/msg/Image", header=header(ts, stamp_ns, frame_id), height=h, width=w,
        encoding=encoding, is_bigendian=0, step=step, data=data.reshape(-1),
    )  # fmt: skip


def compressed_image_message(
    ts: Typestore, rgb: np.ndarray, *, fmt: str = "png", stamp_ns: int = 0, frame_id: str = "camera"
) -> Any:
    """A `sensor_msgs/msg/CompressedImage` (png or jpeg) of an HWC uint8 RGB image."""
    from PIL import Image  # only the tests and benchmarks build compressed images

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format={"jpg": "JPEG"}.get(fmt, fmt.upper()))
    return make_message(
        ts, "sensor_msgs/msg/CompressedImage", header=header(ts, stamp_ns, frame_id), format=fmt,
        data=np.frombuffer(buf.getvalue(), np.uint8),
    )  # fmt: skip


# -- the recorder ---------------------------------------------------------------------------------------
def _check_topic(topic: str) -> None:
    if not isinstance(topic, str) or not _TOPIC_RE.match(topic):
        raise ValueError(
            f"bad topic name {topic!r}: a bag needs fully qualified names like '/camera/image_raw' "
            "(tokens of letters, digits and '_', not starting with a digit)"
        )


class BagRecorder:
    """Writes one rosbag2 directory; thread-safe (one lock), flushed on a timer (see module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        version: int = 9,
        storage: str = "mcap",
        distro: str = "jazzy",
        flush_interval_s: float | None = 1.0,
        fsync: bool = True,
    ) -> None:
        """Create the bag at `path`, which must not exist or be an empty directory (never overwrites).

        `flush_interval_s` bounds what a crash loses (None: flush only in `flush()` / `close()`);
        `fsync` makes each flush survive power loss too, not just a killed process.
        """
        if version not in (8, 9):
            raise ValueError(f"metadata version must be 8 (Humble playback) or 9, got {version!r}")
        if storage not in STORAGES:
            raise ValueError(f"unknown storage {storage!r}; expected one of {sorted(STORAGES)}")
        if flush_interval_s is not None and not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0 or None, got {flush_interval_s!r}")
        self.path = Path(path)
        self.version, self.storage, self.distro, self.fsync = version, storage, distro, fsync
        self.typestore = typestore(distro)
        if self.path.exists() or self.path.is_symlink():
            if not self.path.is_dir() or any(self.path.iterdir()):
                raise FileExistsError(
                    f"{self.path} already exists and is not an empty directory: refusing to overwrite "
                    "it; record to a new path"
                )
            self.path.rmdir()  # rosbags creates the directory itself
        self._writer = Writer(self.path, version=version, storage_plugin=STORAGES[storage])  # type: ignore[arg-type]
        try:
            self._writer.open()
        except WriterError as err:
            raise FileExistsError(f"{self.path}: {err}") from None
        self._share_sqlite_connection()
        self._lock = threading.Lock()
        self._topics: dict[str, tuple[str, Qos, Connection]] = {}
        self._counts: dict[str, int] = {}
        self._dirty = False
        self._closed = False
        self._flush_error: BaseException | None = None
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if flush_interval_s is not None:
            self._flusher = threading.Thread(
                target=self._flush_loop, args=(float(flush_interval_s),), daemon=True,
                name=f"BagRecorder flush {self.path.name}",
            )  # fmt: skip
            self._flusher.start()

    def _share_sqlite_connection(self) -> None:
        """rosbags' sqlite3 connection only works in the thread that made it; our lock serialises use."""
        storage = self._writer.storage
        if isinstance(storage, Sqlite3Writer):
            storage.conn.close()  # the schema is already committed (executescript runs outside a txn)
            storage.conn = sqlite3.connect(f"file:{storage.path}", uri=True, check_same_thread=False)
            storage.cursor = storage.conn.cursor()

    # -- topics -----------------------------------------------------------------------------------------
    @property
    def topics(self) -> dict[str, str]:
        """Registered topics -> message types."""
        with self._lock:
            return {topic: entry[0] for topic, entry in self._topics.items()}

    @property
    def message_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def error(self) -> BaseException | None:
        """The last error of the background flush (e.g. a full disk), or None."""
        return self._flush_error

    def add_topic(self, topic: str, msgtype: str, qos: str | Qos = "reliable") -> None:
        """Register `topic` (e.g. "/cmd_vel", "geometry_msgs/msg/Twist"); the same call again is a no-op.

        `qos` ("reliable" or "sensor_data", or a rosbags `Qos`) is recorded as the offered QoS, which
        `ros2 bag play` uses to publish the topic again.
        """
        with self._lock:
            self._check_open()
            self._add_locked(topic, msgtype, qos)

    def _add_locked(self, topic: str, msgtype: str, qos: str | Qos) -> Connection:
        _check_topic(topic)
        if not isinstance(msgtype, str) or not _MSGTYPE_RE.match(msgtype):
            raise ValueError(
                f"bad message type {msgtype!r} for {topic}: expected e.g. 'sensor_msgs/msg/Image'"
            )
        if msgtype not in self.typestore.fielddefs:
            raise ValueError(f"unknown message type {msgtype!r} for {topic} in the {self.distro} typestore")
        if isinstance(qos, Qos):
            profile = qos
        elif qos in QOS_PROFILES:
            profile = QOS_PROFILES[qos]
        else:
            raise ValueError(f"unknown QoS {qos!r} for {topic}; expected one of {sorted(QOS_PROFILES)}")
        if topic in self._topics:
            have_type, have_qos, conn = self._topics[topic]
            if (have_type, have_qos) != (msgtype, profile):
                raise ValueError(
                    f"topic {topic} is already registered as {have_type} with another QoS or type; "
                    f"cannot register it again as {msgtype}"
                )
            return conn
        conn = self._writer.add_connection(
            topic, msgtype, typestore=self.typestore, offered_qos_profiles=[profile]
        )
        self._topics[topic] = (msgtype, profile, conn)
        self._counts[topic] = 0
        return conn

    # -- writing ----------------------------------------------------------------------------------------
    def write(
        self,
        topic: str,
        stamp_ns: int,
        message: Any,
        *,
        msgtype: str | None = None,
        qos: str | Qos = "reliable",
    ) -> None:
        """Record one message at bag time `stamp_ns` (ns since the epoch, the receive time).

        `message` is raw CDR bytes (what `rclpy.serialization.serialize_message` returns) or a rosbags
        message object. An unregistered topic is registered first when `msgtype` is given.
        """
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)):
            raise TypeError(
                f"stamp_ns for {topic} must be an int (nanoseconds), got {type(stamp_ns).__name__}"
            )
        if not 0 <= int(stamp_ns) < 2**63:
            raise ValueError(f"stamp_ns {stamp_ns} for {topic} is outside [0, 2**63)")
        with self._lock:
            self._check_open()
            entry = self._topics.get(topic)
            if entry is None:
                if msgtype is None:
                    raise ValueError(
                        f"topic {topic!r} is not registered: call add_topic({topic!r}, msgtype) first, "
                        "or pass msgtype= to write()"
                    )
                self._add_locked(topic, msgtype, qos)
                entry = self._topics[topic]
            elif msgtype is not None and msgtype != entry[0]:
                raise ValueError(f"topic {topic} records {entry[0]}, not {msgtype}")
            data = self._serialize(topic, entry[0], message)
            self._writer.write(entry[2], int(stamp_ns), data)
            self._counts[topic] += 1
            self._dirty = True

    def _serialize(self, topic: str, msgtype: str, message: Any) -> bytes | memoryview:
        if isinstance(message, (bytes, bytearray, memoryview)):
            data = bytes(message)
            if len(data) < 4 or data[:2] not in (b"\x00\x00", b"\x00\x01"):
                raise ValueError(
                    f"message for {topic} is not CDR (no CDR encapsulation header); pass the bytes of "
                    "rclpy.serialization.serialize_message or a message object"
                )
            return data
        have = getattr(message, "__msgtype__", None)
        if have is None:
            raise TypeError(
                f"message for {topic} must be CDR bytes or a rosbags message object, "
                f"got {type(message).__name__}"
            )
        if have != msgtype:
            raise ValueError(f"topic {topic} records {msgtype}, got a {have} message")
        try:
            return self.typestore.serialize_cdr(message, msgtype)
        except Exception as err:  # struct.error, TypeError, ValueError from generated code
            raise ValueError(f"cannot serialize the {msgtype} message for {topic}: {err}") from err

    def flush(self) -> None:
        """Hand everything written so far to the OS (and the disk with fsync): a crash keeps it."""
        with self._lock:
            if not self._closed:
                self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._dirty:
            return
        storage = self._writer.storage
        if isinstance(storage, McapWriter):
            if storage.chunk.msgs:  # a chunk with only schemas/channels would carry no time range
                storage.close_chunk()
            storage.bio.flush()
            if self.fsync:
                os.fsync(storage.bio.fileno())
        elif isinstance(storage, Sqlite3Writer):
            storage.conn.commit()  # sqlite's journal makes the commit durable
        self._dirty = False

    def _flush_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.flush()
            except Exception as err:  # e.g. disk full: keep recording, report once
                if self._flush_error is None:
                    log.warning("flushing %s failed: %s", self.path, err)
                self._flush_error = err

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the bag recorder for {self.path} is closed")

    def close(self) -> None:
        """Write the MCAP summary and metadata.yaml; safe to call more than once."""
        self._stop.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._writer.close()
            except BaseException:  # e.g. the disk is full: release the data file all the same
                bio = getattr(self._writer.storage, "bio", None)
                if bio is not None:
                    with contextlib.suppress(OSError):
                        bio.close()
                raise

    def __enter__(self) -> BagRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- recovery -------------------------------------------------------------------------------------------
class RecoveryError(ValueError):
    """A bag directory holds nothing `recover` can rebuild a bag from."""


_MCAP_MAGIC = b"\x89MCAP0\r\n"
_OP_HEADER, _OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK, _OP_DATA_END = (
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0F,
)  # fmt: skip


class _Buf:
    """Little-endian MCAP field reader over one record's bytes."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise struct.error("record is shorter than its fields")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> str:
        return self.take(self.u32()).decode()

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.pos)


def _parse_record(op: int, content: bytes) -> tuple[Any, ...] | None:
    """A schema, channel or message record as a tuple (None for the record kinds recovery skips)."""
    buf = _Buf(content)
    if op == _OP_SCHEMA:
        sid, name, encoding = buf.u16(), buf.string(), buf.string()
        return ("schema", sid, name, encoding, buf.take(buf.u32()).decode())
    if op == _OP_CHANNEL:
        cid, sid, topic, encoding = buf.u16(), buf.u16(), buf.string(), buf.string()
        meta_buf, meta = _Buf(buf.take(buf.u32())), {}
        while meta_buf.pos < len(meta_buf.data):
            key = meta_buf.string()
            meta[key] = meta_buf.string()
        return ("channel", cid, sid, topic, encoding, meta)
    if op == _OP_MESSAGE:
        cid, _sequence, log_time, _publish_time = buf.u16(), buf.u32(), buf.u64(), buf.u64()
        return ("message", cid, log_time, buf.rest())
    return None


def _inner_records(data: bytes) -> Iterator[tuple[Any, ...]]:
    """Records of a chunk's (possibly truncated) record area; stops at the first incomplete one."""
    pos = 0
    while pos + 9 <= len(data):
        op, length = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
        if pos + 9 + length > len(data):
            return
        try:
            parsed = _parse_record(op, data[pos + 9 : pos + 9 + length])
        except (struct.error, UnicodeDecodeError):
            return
        if parsed is not None:
            yield parsed
        pos += 9 + length


def _decompress(data: bytes, compression: str, size: int) -> bytes | None:
    if compression == "":
        return data
    try:
        from rosbags.rosbag2.storage_mcap import DECOMPRESSORS

        return DECOMPRESSORS[compression](data, size)
    except Exception:
        return None


def _salvage_mcap(path: Path, stats: dict[str, int]) -> Iterator[tuple[Any, ...]]:
    """Every whole schema/channel/message of an MCAP file in file order, up to where it breaks off.

    rosbags puts schemas and channels in the chunks before the messages that use them, so the events
    come in an order a writer can follow. The summary after DataEnd only repeats them and is skipped.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        magic = f.read(8)
        if magic != _MCAP_MAGIC:
            if _MCAP_MAGIC.startswith(magic):  # killed before the first flush: the header never left the
                stats["lost_bytes"] = size  # write buffer, so what can be rebuilt is an empty bag
                return
            raise RecoveryError(f"{path} is not an MCAP file (bad magic bytes)")
        good = 8  # end of the last whole record
        while True:
            head = f.read(9)
            if len(head) < 9:
                break
            op, length = head[0], struct.unpack_from("<Q", head, 1)[0]
            if op in (_OP_DATA_END, _OP_FOOTER):
                good = size
                break
            if length > size - good - 9:  # runs past the end of the file: cut off by the crash
                if op == _OP_CHUNK:  # an uncompressed chunk still holds whole messages up to the cut
                    yield from _partial_chunk(f.read(), stats)
                break
            content = f.read(length)
            if op == _OP_CHUNK:
                buf = _Buf(content)
                try:
                    _start, _end, raw_size, crc = buf.u64(), buf.u64(), buf.u64(), buf.u32()
                    compression = buf.string()
                    records = _decompress(buf.take(buf.u64()), compression, raw_size)
                except (struct.error, UnicodeDecodeError):
                    records = None
                if records is None or (crc and zlib.crc32(records) != crc):
                    stats["bad_chunks"] += 1
                else:
                    yield from _inner_records(records)
            else:
                try:
                    parsed = _parse_record(op, content)
                except (struct.error, UnicodeDecodeError):
                    parsed = None
                if parsed is not None:
                    yield parsed
            good = f.tell()
        stats["lost_bytes"] = size - good


def _partial_chunk(data: bytes, stats: dict[str, int]) -> Iterator[tuple[Any, ...]]:
    buf = _Buf(data)
    try:
        buf.take(28)
        compression = buf.string()
        buf.take(8)
    except (struct.error, UnicodeDecodeError):
        return
    if compression != "":
        stats["bad_chunks"] += 1
        return
    yield from _inner_records(buf.rest())


def _salvage_sqlite(path: Path, stats: dict[str, int]) -> Iterator[tuple[Any, ...]]:
    """A rosbag2 sqlite3 file as the same events; opening it rolls back an interrupted transaction."""
    conn = sqlite3.connect(f"file:{path}", uri=True)
    try:
        defs = {
            row[0]: (row[1], row[2])
            for row in conn.execute(
                "SELECT topic_type, encoding, encoded_message_definition FROM message_definitions"
            )
        }
        for sid, (msgtype, (encoding, text)) in enumerate(defs.items(), start=1):
            yield ("schema", sid, msgtype, encoding, text)
        sids = {msgtype: sid for sid, msgtype in enumerate(defs, start=1)}
        rows = conn.execute("SELECT id, name, type, serialization_format, offered_qos_profiles FROM topics")
        for cid, topic, msgtype, fmt, qos in rows.fetchall():
            yield (
                "channel",
                cid,
                sids.get(msgtype, 0),
                topic,
                fmt,
                {"offered_qos_profiles": qos, "type": msgtype},
            )
        for cid, stamp, data in conn.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY id"):
            yield ("message", cid, stamp, bytes(data))
    except sqlite3.DatabaseError as err:
        raise RecoveryError(f"{path} is not a readable rosbag2 sqlite3 file: {err}") from err
    finally:
        conn.close()
    stats["lost_bytes"] = 0


def _rihs01(msgtype: str, msgdef: str, encoding: str) -> str:
    """The type hash ROS 2 expects, computed from the definition stored in the file itself."""
    if encoding == "ros2msg" and msgdef:
        store = get_typestore(Stores.EMPTY)
        store.register(get_types_from_msg(msgdef, msgtype))
        return store.hash_rihs01(msgtype)
    for stores in DISTROS.values():  # IDL or missing definitions: trust a distro that has the type
        store = get_typestore(stores)
        if msgtype in store.fielddefs:
            return store.hash_rihs01(msgtype)
    raise RecoveryError(f"cannot compute the type hash of {msgtype}: no usable definition")


def _qos_version(qos_yaml: str) -> int | None:
    """8 when offered_qos_profiles was dumped with enum numbers (v8 form), 9 with names."""
    from ruamel.yaml import YAML

    try:
        items = YAML(typ="safe").load(qos_yaml) if qos_yaml else None
    except Exception:
        return None
    if isinstance(items, list) and items and isinstance(items[0], dict):
        return 8 if isinstance(items[0].get("reliability"), int) else 9
    return None


def _data_file(path: Path) -> tuple[Path, str]:
    """The bag's data file and its storage; a `.damaged` original wins over a half-moved rebuild."""
    for storage, suffix in _DATA_SUFFIX.items():
        damaged = sorted(path.glob(f"*{suffix}{DAMAGED_SUFFIX}"))
        if damaged:
            return damaged[0], storage
    found = [(p, s) for s, suffix in _DATA_SUFFIX.items() for p in sorted(path.glob(f"*{suffix}"))]
    if not found:
        raise RecoveryError(f"{path} holds no .mcap or .db3 data file: there is nothing to recover")
    if len(found) > 1:
        names = [p.name for p, _ in found]
        raise RecoveryError(f"{path} holds several data files {names}; recover handles single-file bags")
    return found[0]


def recover(
    path: str | os.PathLike, *, version: int | None = None, keep_damaged: bool = True
) -> dict[str, Any]:
    """Rebuild a readable bag in place from the data file a killed recorder left without metadata.yaml.

    Every whole message is kept (with its topics' types, definitions and QoS); the part the crash cut
    off is reported as `lost_bytes`. The original file stays beside it as `<name>.damaged` unless
    `keep_damaged=False`. `version` defaults to the one the QoS records were written in. A bag that
    has metadata.yaml is left alone (`status: "intact"`). Returns a JSON-able summary.
    """
    path = Path(path)
    if not path.is_dir():
        raise RecoveryError(f"{path} is not a bag directory")
    if (path / "metadata.yaml").is_file():
        return {"path": str(path), "status": "intact"}
    source, storage = _data_file(path)
    name = source.name[: -len(DAMAGED_SUFFIX)] if source.name.endswith(DAMAGED_SUFFIX) else source.name
    scratch = path / RECOVER_DIR
    shutil.rmtree(scratch, ignore_errors=True)  # left by an interrupted recover
    scratch.mkdir()
    rebuilt = scratch / Path(name).stem  # the rebuilt data file gets the original's name

    stats = {"lost_bytes": 0, "bad_chunks": 0, "orphan_messages": 0}
    events = _salvage_mcap(source, stats) if storage == "mcap" else _salvage_sqlite(source, stats)
    schemas: dict[int, tuple[str, str, str]] = {}
    conns: dict[int, Connection] = {}
    counts: dict[str, int] = {}
    writer: Writer | None = None
    try:
        for event in events:
            kind = event[0]
            if kind == "schema":
                schemas[event[1]] = event[2:]
            elif kind == "channel":
                _, cid, sid, topic, encoding, meta = event
                if cid in conns:
                    continue
                msgtype, schema_encoding, msgdef = schemas.get(sid, (meta.get("type", ""), "", ""))
                if not msgtype:
                    raise RecoveryError(f"{source}: channel {topic} has no schema (message type unknown)")
                qos_yaml = meta.get("offered_qos_profiles", "")
                if writer is None:
                    version = version or _qos_version(qos_yaml) or 9
                    writer = Writer(rebuilt, version=version, storage_plugin=STORAGES[storage])  # type: ignore[arg-type]
                    writer.open()
                conns[cid] = writer.add_connection(
                    topic, msgtype, msgdef=msgdef, rihs01=_rihs01(msgtype, msgdef, schema_encoding),
                    serialization_format=encoding, offered_qos_profiles=parse_qos(qos_yaml),
                )  # fmt: skip
                counts[topic] = 0
            elif kind == "message":
                _, cid, stamp, data = event
                if cid not in conns or writer is None:
                    stats["orphan_messages"] += 1
                    continue
                writer.write(conns[cid], stamp, data)
                counts[conns[cid].topic] += 1
        if writer is None:  # nothing but a file header survived: an empty, valid bag
            version = version or 9
            writer = Writer(rebuilt, version=version, storage_plugin=STORAGES[storage])  # type: ignore[arg-type]
            writer.open()
        writer.close()
        with Reader(rebuilt) as check:
            if check.message_count != sum(counts.values()):
                raise RecoveryError(f"{rebuilt}: the rebuilt bag reads back {check.message_count} messages")
    except BaseException:
        if writer is not None and writer.storage is not None:
            writer.abort()
        shutil.rmtree(scratch, ignore_errors=True)
        raise

    # Publish: the original moves aside, then the data file, then metadata.yaml (the commit point).
    damaged = path / (name + DAMAGED_SUFFIX)
    if source != damaged:
        os.replace(source, damaged)
    data_name = next(p.name for p in rebuilt.iterdir() if p.name != "metadata.yaml")
    os.replace(rebuilt / data_name, path / data_name)
    os.replace(rebuilt / "metadata.yaml", path / "metadata.yaml")
    shutil.rmtree(scratch, ignore_errors=True)
    if not keep_damaged:
        damaged.unlink()
    return {
        "path": str(path),
        "status": "recovered",
        "storage": storage,
        "version": version,
        "messages": sum(counts.values()),
        "topics": counts,
        "lost_bytes": stats["lost_bytes"],
        "bad_chunks": stats["bad_chunks"],
        "orphan_messages": stats["orphan_messages"],
        "damaged": str(damaged) if keep_damaged else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m uio2_ros.bag recover PATH`: make a killed recorder's bag readable again."""
    parser = argparse.ArgumentParser(prog="python -m uio2_ros.bag", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("recover", help="rebuild metadata.yaml and the MCAP index after a crash")
    rec.add_argument("path", help="the bag directory")
    rec.add_argument("--version", type=int, choices=(8, 9), default=None, help="metadata version")
    rec.add_argument("--discard-damaged", action="store_true", help="delete the damaged original")
    args = parser.parse_args(argv)
    try:
        summary = recover(args.path, version=args.version, keep_damaged=not args.discard_damaged)
    except (RecoveryError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
