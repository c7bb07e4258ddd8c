"""Record rollouts as a LeRobotDataset v3.0 directory, one crash-safe episode at a time.

Layout (v3.0; training.dataset reads it): `meta/info.json`, `meta/stats.json`, `meta/tasks.parquet`,
`meta/episodes/chunk-XXX/file-XXX.parquet`, `data/chunk-XXX/file-XXX.parquet`, plus our sidecar
`meta/episodes_extra/chunk-XXX/file-XXX.parquet` (one row per episode: a JSON column for `extra`
and a list of PNG-encoded prompt-asset images). v3 lets a data file hold many episodes; we write one
file per episode (episode k -> chunk k // 1000, file k % 1000) so that committing never rewrites
data that is already safe. Frames of `image` features are PNG bytes inside the data file (LeRobot's
`image` storage), so nothing is ever written under `videos/` or `images/`.

Crash safety as LeRobot reads a dataset. LeRobot (and HF `datasets` under it) loads every
`data/*/*.parquet` and `meta/episodes/*/*.parquet`, takes its totals from `meta/info.json`, and
fetches from the Hub when info.json names an episode that `data/` lacks. So every file is first
written and fsynced under `.staging/` (a hidden folder that no such pattern matches) and published
with `os.replace`; `end_episode` publishes in this order:
  1. `meta/tasks.parquet`, if the task is new (a task list that runs ahead is harmless);
  2. the episode's sidecar, then its row in `meta/episodes/` (a row whose data is absent is not read);
  3. the data file -- the commit point: from here the episode is whole where LeRobot looks;
  4. `meta/info.json`, then `meta/stats.json` (derived, rewritten whole; staged before step 1).
After a `kill -9` anywhere, `data/` holds exactly the committed episodes, each whole, each with its
row, and info.json counts them -- except between 3 and 4 (one directory fsync apart), when info.json
still counts one episode less: LeRobot's `len()` then leaves the newest, whole episode out; it never
reads a partial one. Writing info.json before the data instead would make LeRobot fetch the missing
episode from the Hub. The next recorder on the same root removes what a crash left (a row without its
data file, `.staging/`, any orphan) and rewrites the derived files from the episode rows; the reader
needs no repair (see training.dataset). Task indices are the order of first appearance among
committed episodes, hence derivable from the rows. One recorder per root (an flock on `meta/.lock`);
`close()` (or leaving the `with` block) discards an episode that was not ended.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from training.dataset import (
    CHUNKS_SIZE,
    CODEBASE_VERSION,
    DATA_PATH,
    EPISODES_PATH,
    EXTRA_PATH,
    INFO_PATH,
    STATS_PATH,
    TASKS_PATH,
    VIDEO_PATH,
    aggregate_stats,
    chunk_and_file,
    episode_stats,
    read_episode_rows,
    read_info,
    tasks_from_rows,
)
from training.features import DEFAULT_FEATURES

DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
ROWS_PER_GROUP = 64
IMAGE_STATS_SIDE = 64  # image stats use a pixel grid of stride min(H, W) // 64: exact up to 127 px
STAGING_DIR = ".staging"  # files not yet published; outside every path LeRobot or HF datasets reads

# Called as hook(point, episode_index) at the named points of recording ("episode-started",
# "row-group-written", "episode-staged", "row-published", "data-published", "episode-committed";
# "info-staged" while creating, with index -1). Tests stop the process there to kill it.
checkpoint_hook: Callable[[str, int], None] | None = None


def _checkpoint(point: str, episode: int) -> None:
    if checkpoint_hook is not None:
        checkpoint_hook(point, episode)


# -- files ----------------------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def encode_png(image: np.ndarray, compress_level: int = 1) -> bytes:
    buf = io.BytesIO()
    if image.ndim == 3 and image.shape[-1] == 1:  # one channel (a segmentation): a greyscale PNG
        image = image[..., 0]
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


# -- columns --------------------------------------------------------------------------------------------
_IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _arrow_type(feature: dict[str, Any]) -> pa.DataType:
    """LeRobot's storage: image -> {bytes, path}; shape (1,) -> scalar; else nested fixed-size lists."""
    if feature["dtype"] == "image":
        return _IMAGE_TYPE
    typ = pa.from_numpy_dtype(np.dtype(feature["dtype"]))
    shape = list(feature["shape"])
    if shape == [1]:
        return typ
    for size in reversed(shape):
        typ = pa.list_(typ, int(size))
    return typ


def _column(values: list[Any], feature: dict[str, Any]) -> pa.Array:
    if feature["dtype"] == "image":
        return pa.StructArray.from_arrays(
            [pa.array(values, pa.binary()), pa.nulls(len(values), pa.string())], fields=list(_IMAGE_TYPE)
        )
    stacked = np.stack(values).astype(np.dtype(feature["dtype"]), copy=False)
    arr: pa.Array = pa.array(stacked.reshape(-1))
    shape = list(feature["shape"])
    if shape == [1]:
        return arr
    for size in reversed(shape):
        arr = pa.FixedSizeListArray.from_arrays(arr, int(size))
    return arr


# -- statistics -----------------------------------------------------------------------------------------
class _Stats:
    """Running count/sum/sum-of-squares/min/max of one feature; images via per-channel 256-bin histograms.

    Images wider and taller than 127 px are sampled on a pixel grid (every 2nd, 4th... pixel), which
    keeps stats at a fraction of a millisecond per frame; the estimate is plenty for normalisation.
    """

    def __init__(self, feature: dict[str, Any]) -> None:
        self.image = feature["dtype"] == "image"
        shape = [int(s) for s in feature["shape"]]
        names = feature.get("names") or []
        if self.image:  # LeRobot: per channel, in [0, 1], shape (C, 1, 1)
            self.out_shape: tuple[int, ...] = (shape[-1], 1, 1)
            self.hist = np.zeros((shape[-1], 256), np.int64)
            self.axes: tuple[int, ...] = ()
        elif len(shape) == 1:
            self.axes, self.out_shape = (0,), tuple(shape)
        else:  # N-D arrays (depth, audio): per channel when a "channels" axis is named, else one value
            keep = names.index("channels") if "channels" in names else None
            self.axes = (0, *(1 + a for a in range(len(shape)) if a != keep))
            self.out_shape = tuple(s if a == keep else 1 for a, s in enumerate(shape))
        self.per_cell = 1 if self.image else int(np.prod(shape)) // int(np.prod(self.out_shape))
        self.count = 0
        self.sum: np.ndarray | None = None
        self.sumsq = self.min = self.max = self.sum

    def update(self, batch: np.ndarray) -> None:
        """Fold in a batch of frames, shape (n, *feature shape)."""
        self.count += len(batch)
        if self.image:
            stride = max(1, min(batch.shape[1:3]) // IMAGE_STATS_SIDE)  # LeRobot subsamples images too
            pixels = batch[:, ::stride, ::stride]
            c = pixels.shape[-1]
            codes = pixels.reshape(-1, c).astype(np.intp) + 256 * np.arange(c)
            self.hist += np.bincount(codes.reshape(-1), minlength=256 * c).reshape(c, 256)
            return
        x = batch if batch.dtype.kind == "f" else batch.astype(np.float64)
        s = x.sum(axis=self.axes, dtype=np.float64)
        ss = np.square(x).sum(axis=self.axes, dtype=np.float64)
        lo = x.min(axis=self.axes).astype(np.float64)
        hi = x.max(axis=self.axes).astype(np.float64)
        if self.sum is None:
            self.sum, self.sumsq, self.min, self.max = s, ss, lo, hi
        else:
            self.sum, self.sumsq = self.sum + s, self.sumsq + ss
            self.min, self.max = np.minimum(self.min, lo), np.maximum(self.max, hi)

    def result(self) -> dict[str, np.ndarray]:
        if self.image:
            levels = np.arange(256) / 255.0
            pixels = self.hist.sum(axis=1)
            mean = self.hist @ levels / pixels
            var = self.hist @ (levels**2) / pixels - mean**2
            present = self.hist > 0
            lo = np.argmax(present, axis=1) / 255.0
            hi = (255 - np.argmax(present[:, ::-1], axis=1)) / 255.0
        else:
            n = self.count * self.per_cell
            mean = self.sum / n
            var = self.sumsq / n - mean**2
            lo, hi = self.min, self.max
        stats = {"mean": mean, "std": np.sqrt(np.maximum(var, 0.0)), "min": lo, "max": hi}
        out = {k: np.asarray(v, np.float64).reshape(self.out_shape) for k, v in stats.items()}
        out["count"] = np.asarray([self.count], np.int64)
        return out


def _stats_json(stats: dict[str, dict[str, np.ndarray]]) -> bytes:
    return json.dumps({k: {s: v.tolist() for s, v in d.items()} for k, d in stats.items()}, indent=2).encode()


# -- extras ---------------------------------------------------------------------------------------------
_ASSET_TYPE = pa.struct(
    [
        ("name", pa.string()),
        ("modality", pa.string()),
        ("view", pa.string()),
        ("png", pa.binary()),
        ("chw", pa.bool_()),
    ]
)


def _to_json(value: Any) -> Any:
    """JSON-safe copy of an extra value; numpy arrays are tagged so the reader can rebuild them."""
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _split_assets(prompt_assets: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Prompt-asset images (uint8 views under `rgb` / `segm`) as PNG rows; the rest stays for JSON."""
    rows: list[dict[str, Any]] = []
    rest: dict[str, Any] = {}
    for name, asset in prompt_assets.items():
        kept: dict[str, Any] = {}
        for key, value in (asset if isinstance(asset, dict) else {"value": asset}).items():
            if not isinstance(value, dict):
                kept[key] = value
                continue
            kept_views = {}
            for view, img in value.items():
                arr = img if isinstance(img, np.ndarray) and img.dtype == np.uint8 else None
                chw = (
                    arr is not None
                    and arr.ndim == 3
                    and arr.shape[0] in (3, 4)
                    and arr.shape[-1] not in (3, 4)
                )
                hwc = arr.transpose(1, 2, 0) if chw else arr
                if hwc is not None and (hwc.ndim == 2 or (hwc.ndim == 3 and hwc.shape[-1] in (3, 4))):
                    rows.append(
                        {
                            "name": str(name),
                            "modality": str(key),
                            "view": str(view),
                            "png": encode_png(hwc),
                            "chw": chw,
                        }
                    )
                else:
                    kept_views[view] = img
            kept[key] = kept_views
        rest[str(name)] = kept
    return rows, rest


def _storable(have: np.dtype, want: np.dtype, exact: bool) -> bool:
    """Casts that lose no meaning: bool->bool, int/bool->int, int/float->float; images must be uint8."""
    if exact or want.kind == "b":
        return have == want
    if want.kind in "iu":
        return have.kind in "iub"
    return have.kind in "iuf"


# -- the recorder ---------------------------------------------------------------------------------------
class TrajectoryRecorder:
    """Append episodes to a LeRobotDataset v3.0 directory; see the module docstring for the guarantees."""

    def __init__(
        self,
        root: str | Path,
        fps: int,
        features: dict[str, dict[str, Any]],
        robot_type: str | None = None,
        *,
        fsync: bool = True,
        png_compress_level: int = 1,
        rows_per_group: int = ROWS_PER_GROUP,
    ) -> None:
        """Create `root` as a dataset, or reopen it for appending (same fps and features, else ValueError).

        `fsync=False` trades power-loss safety for speed (a killed process is still safe: the page cache
        survives it). `rows_per_group` frames are buffered before they go to the episode's temp file.
        """
        self.root = Path(root)
        self.fps = int(fps)
        self.fsync = fsync
        self.png_compress_level = png_compress_level
        self.rows_per_group = max(1, int(rows_per_group))
        for key in features:
            if key in DEFAULT_FEATURES or key == "task":
                raise ValueError(f"feature {key!r} is added by the recorder; leave it out of `features`")
        self.user_features = json.loads(json.dumps(features))
        self.features = {**self.user_features, **DEFAULT_FEATURES}
        self.schema = pa.schema([(k, _arrow_type(ft)) for k, ft in self.features.items()])
        self.robot_type = robot_type
        self._lock = None
        self._episode: dict[str, Any] | None = None
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / INFO_PATH).is_file():
            self._check_empty()
        self._acquire_lock()
        try:
            if (self.root / INFO_PATH).is_file():
                self._open_existing()
            else:
                self._create()
        except BaseException:
            self.close()
            raise

    # -- setup --------------------------------------------------------------------------------------------
    def _acquire_lock(self) -> None:
        (self.root / "meta").mkdir(parents=True, exist_ok=True)
        lock = open(self.root / "meta" / ".lock", "w")  # noqa: SIM115 (held for the recorder's lifetime)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise RuntimeError(f"{self.root} is already open in another TrajectoryRecorder") from None
        self._lock = lock

    def _check_empty(self) -> None:
        """A new dataset only goes where nothing but a crashed creation (lock, staged files) could be."""
        staging = self.root / STAGING_DIR
        leftovers = [
            p
            for p in self.root.rglob("*")
            if p.is_file()
            and p.name != ".lock"
            and not p.name.endswith(".tmp")
            and staging not in p.parents
        ]
        if leftovers:
            raise ValueError(
                f"{self.root} has files but no {INFO_PATH}: not a dataset, refusing to write there"
            )

    def _create(self) -> None:
        """info.json goes first: from then on the root is a (possibly empty) dataset that reopens."""
        self._rows: list[dict[str, Any]] = []
        self._tasks: list[str] = []
        self._stats: dict[str, dict[str, np.ndarray]] = {}
        self._publish_bytes(INFO_PATH, json.dumps(self._info([], []), indent=2).encode(), "info-staged")
        self._write_derived()

    def _open_existing(self) -> None:
        info = read_info(self.root)
        if int(info["fps"]) != self.fps:
            raise ValueError(f"{self.root} was recorded at fps={info['fps']}, not {self.fps}")
        if info["features"] != self.features:
            theirs, ours = info["features"], self.features
            diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
            raise ValueError(
                f"{self.root} has different features; mismatched keys {diff}: "
                + "; ".join(f"{k}: dataset {theirs.get(k)} vs given {ours.get(k)}" for k in diff[:3])
            )
        self.features = info["features"]  # keep the stored column order for every file
        self.user_features = {k: v for k, v in self.features.items() if k not in DEFAULT_FEATURES}
        self.schema = pa.schema([(k, _arrow_type(ft)) for k, ft in self.features.items()])
        if self.robot_type is None:
            self.robot_type = info.get("robot_type")
        elif info.get("robot_type") not in (None, self.robot_type):
            raise ValueError(f"{self.root} has robot_type {info['robot_type']!r}, not {self.robot_type!r}")
        self._rows = self._recover(read_episode_rows(self.root))
        self._tasks = tasks_from_rows(self._rows)
        self._stats = aggregate_stats([episode_stats(r) for r in self._rows])
        self._remove_orphans()
        self._write_derived()

    def _recover(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Undo a commit cut between its row (step 2) and its data file (step 3).

        Only the newest row can lack its data file. The reader already ignores such a row, and so does
        LeRobot (info.json does not count it); removing it keeps every view of the dataset the same.
        """
        if not rows:
            return rows
        loc = chunk_and_file(int(rows[-1]["episode_index"]))
        if (self.root / DATA_PATH.format(**loc)).is_file():
            return rows
        (self.root / EPISODES_PATH.format(**loc)).unlink()
        (self.root / EXTRA_PATH.format(**loc)).unlink(missing_ok=True)
        return rows[:-1]

    def _remove_orphans(self) -> None:
        """Delete what a crash left behind, so that any v3 reader sees only committed episodes."""
        shutil.rmtree(self.root / STAGING_DIR, ignore_errors=True)
        committed = len(self._rows)
        for sub in ("data", "meta/episodes", "meta/episodes_extra"):
            for path in (self.root / sub).glob("chunk-*/*"):
                if path.name.endswith(".tmp"):
                    path.unlink()
                    continue
                try:
                    chunk = int(path.parent.name.removeprefix("chunk-"))
                    index = chunk * CHUNKS_SIZE + int(path.stem.removeprefix("file-"))
                except ValueError:
                    continue
                if index >= committed:
                    path.unlink()
        for path in (self.root / "meta").glob("*.tmp"):
            path.unlink()

    # -- derived metadata ---------------------------------------------------------------------------------
    @property
    def num_episodes(self) -> int:
        return len(self._rows)

    @property
    def num_frames(self) -> int:
        return sum(int(r["length"]) for r in self._rows)

    def _info(self, rows: list[dict[str, Any]], tasks: list[str]) -> dict[str, Any]:
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(rows),
            "total_frames": sum(int(r["length"]) for r in rows),
            "total_tasks": len(tasks),
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
            "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
            "fps": self.fps,
            "splits": {"train": f"0:{len(rows)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": self.features,
        }

    # -- publishing -----------------------------------------------------------------------------------------
    def _staged(self, rel: str) -> Path:
        """Where the file published at `rel` is written first (one flat, hidden folder)."""
        return self.root / STAGING_DIR / rel.replace("/", "%")

    def _publish_file(
        self, staged: Path, rel: str, point: str | None = None, episode: int = -1, synced: bool = False
    ) -> None:
        """Move a finished staged file to `rel` atomically; fsynced before (unless `synced`) and after."""
        final = self.root / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        if self.fsync and not synced:
            _fsync_file(staged)
        if point is not None:
            _checkpoint(point, episode)
        os.replace(staged, final)
        if self.fsync:
            _fsync_dir(final.parent)

    def _publish_bytes(self, rel: str, data: bytes, point: str | None = None) -> None:
        staged = self._staged(rel)
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_bytes(data)
        self._publish_file(staged, rel, point)

    def _publish_table(self, rel: str, table: pa.Table) -> None:
        staged = self._staged(rel)
        staged.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, staged)
        self._publish_file(staged, rel)

    # -- derived metadata, continued ------------------------------------------------------------------------
    def _write_derived(self) -> None:
        """tasks.parquet, then info.json and stats.json (each one is derived from the episode rows)."""
        self._write_tasks(self._tasks)
        for staged, rel in self._stage_totals(self._rows, self._tasks, self._stats):
            self._publish_file(staged, rel, synced=True)

    def _stage_totals(
        self, rows: list[dict[str, Any]], tasks: list[str], stats: dict[str, dict[str, np.ndarray]]
    ) -> list[tuple[Path, str]]:
        """info.json and stats.json for these rows, written and fsynced under .staging/, not yet published."""
        out = []
        for rel, data in (
            (INFO_PATH, json.dumps(self._info(rows, tasks), indent=2).encode()),
            (STATS_PATH, _stats_json(stats)),
        ):
            staged = self._staged(rel)
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_bytes(data)
            if self.fsync:
                _fsync_file(staged)
            out.append((staged, rel))
        return out

    def _write_tasks(self, task_list: list[str]) -> None:
        tasks = pa.table(
            {
                "task_index": pa.array(range(len(task_list)), pa.int64()),
                "task": pa.array(task_list, pa.string()),
            }
        )
        pandas_meta = {  # pandas (hence LeRobot's load_tasks) reads `task` back as the index
            "index_columns": ["task"],
            "column_indexes": [],
            "columns": [
                {
                    "name": "task_index",
                    "field_name": "task_index",
                    "pandas_type": "int64",
                    "numpy_type": "int64",
                    "metadata": None,
                },
                {
                    "name": "task",
                    "field_name": "task",
                    "pandas_type": "unicode",
                    "numpy_type": "object",
                    "metadata": None,
                },
            ],
            "creator": {"library": "pyarrow", "version": pa.__version__},
            "pandas_version": "2.2.0",
        }
        tasks = tasks.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
        self._publish_table(TASKS_PATH, tasks)

    # -- episodes -----------------------------------------------------------------------------------------
    def start_episode(self, task: str, extra: dict[str, Any] | None = None) -> int:
        """Begin the next episode (its index is returned); `extra` goes to the sidecar with end's extra."""
        if self._lock is None:
            raise RuntimeError("the recorder is closed")
        if self._episode is not None:
            raise RuntimeError("an episode is already in progress; call end_episode() or discard_episode()")
        if not isinstance(task, str):
            raise TypeError(f"task must be a string, got {type(task).__name__}")
        index = self.num_episodes
        data_rel = DATA_PATH.format(**chunk_and_file(index))
        self._episode = {
            "index": index,
            "task": task,
            "task_index": self._tasks.index(task) if task in self._tasks else len(self._tasks),
            "from": self.num_frames,
            "length": 0,
            "pending": 0,
            "extra": dict(extra or {}),
            "data_rel": data_rel,
            "tmp": self._staged(data_rel),
            "writer": None,
            "buffer": {k: [] for k in self.user_features},
            "stats": {k: _Stats(ft) for k, ft in self.user_features.items()},
            "last": None,
        }
        _checkpoint("episode-started", index)
        return index

    def _validate(self, frame: dict[str, Any]) -> dict[str, Any]:
        ep = self._episode
        assert ep is not None
        keys = set(frame) - {"task"}
        missing = sorted(set(self.user_features) - keys)
        unexpected = sorted(keys - set(self.user_features))
        if missing or unexpected:
            raise ValueError(
                f"frame {ep['length']}: missing keys {missing}, unexpected keys {unexpected}; "
                f"expected {sorted(self.user_features)}"
            )
        if "task" in frame and frame["task"] != ep["task"]:
            raise ValueError(f"frame task {frame['task']!r} differs from the episode's task {ep['task']!r}")
        out: dict[str, Any] = {}
        for key, ft in self.user_features.items():
            arr = np.asarray(frame[key])
            shape = tuple(ft["shape"])
            if arr.shape == () and shape == (1,):
                arr = arr.reshape(1)
            if arr.shape != shape:
                raise ValueError(f"frame[{key!r}] has shape {arr.shape}, the feature says {shape}")
            want = np.dtype("uint8" if ft["dtype"] == "image" else ft["dtype"])
            if not _storable(arr.dtype, want, exact=ft["dtype"] == "image"):
                raise ValueError(
                    f"frame[{key!r}] has dtype {arr.dtype}, which cannot be stored as {ft['dtype']}"
                )
            if want.kind == "f":
                arr = arr.astype(want, copy=False)
                if not np.isfinite(arr).all():
                    bad = int(np.size(arr) - np.isfinite(arr).sum())
                    raise ValueError(f"frame[{key!r}] contains {bad} NaN or inf value(s)")
            out[key] = arr
        return out

    def add_frame(self, frame: dict[str, Any]) -> None:
        """Validate one frame against the features and stage it (written out every `rows_per_group`)."""
        ep = self._episode
        if ep is None:
            raise RuntimeError("add_frame() before start_episode()")
        values = self._validate(frame)
        for key, ft in self.user_features.items():
            value = values[key]
            if ft["dtype"] == "image":
                ep["stats"][key].update(value[None])
                value = encode_png(value, self.png_compress_level)
            ep["buffer"][key].append(value)
        ep["last"] = values
        ep["length"] += 1
        ep["pending"] += 1
        if ep["pending"] >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        ep = self._episode
        assert ep is not None
        n = ep["pending"]
        if n == 0:
            return
        ep["pending"] = 0
        columns: dict[str, pa.Array] = {}
        for key, ft in self.user_features.items():
            values = ep["buffer"][key]
            if ft["dtype"] != "image":
                ep["stats"][key].update(np.stack(values))
            columns[key] = _column(values, ft)
            ep["buffer"][key] = []
        start = ep["length"] - n
        frame_index = np.arange(start, ep["length"], dtype=np.int64)
        columns["timestamp"] = pa.array((frame_index / self.fps).astype(np.float32))
        columns["frame_index"] = pa.array(frame_index)
        columns["episode_index"] = pa.array(np.full(n, ep["index"], np.int64))
        columns["index"] = pa.array(frame_index + ep["from"])
        columns["task_index"] = pa.array(np.full(n, ep["task_index"], np.int64))
        table = pa.Table.from_arrays([columns[k] for k in self.schema.names], schema=self.schema)
        if ep["writer"] is None:
            ep["tmp"].parent.mkdir(parents=True, exist_ok=True)
            ep["writer"] = pq.ParquetWriter(ep["tmp"], self.schema, compression="zstd", use_dictionary=False)
        ep["writer"].write_table(table)
        _checkpoint("row-group-written", ep["index"])

    def _episode_row(self, ep: dict[str, Any], stats: dict[str, dict[str, np.ndarray]]) -> pa.Table:
        loc = chunk_and_file(ep["index"])
        row: dict[str, Any] = {
            "episode_index": pa.array([ep["index"]], pa.int64()),
            "tasks": pa.array([[ep["task"]]], pa.list_(pa.string())),
            "length": pa.array([ep["length"]], pa.int64()),
            "data/chunk_index": pa.array([loc["chunk_index"]], pa.int64()),
            "data/file_index": pa.array([loc["file_index"]], pa.int64()),
            "dataset_from_index": pa.array([ep["from"]], pa.int64()),
            "dataset_to_index": pa.array([ep["from"] + ep["length"]], pa.int64()),
            "meta/episodes/chunk_index": pa.array([loc["chunk_index"]], pa.int64()),
            "meta/episodes/file_index": pa.array([loc["file_index"]], pa.int64()),
        }
        for key, st in stats.items():
            for name, value in st.items():
                typ = pa.int64() if name == "count" else pa.float64()
                for _ in range(value.ndim):
                    typ = pa.list_(typ)
                row[f"stats/{key}/{name}"] = pa.array([value.tolist()], typ)
        return pa.table(row)

    def _default_stats(self, ep: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
        frame_index = np.arange(ep["length"], dtype=np.float64)
        columns = {
            "timestamp": (frame_index / self.fps).astype(np.float32).astype(np.float64),
            "frame_index": frame_index,
            "episode_index": np.full(ep["length"], ep["index"], np.float64),
            "index": frame_index + ep["from"],
            "task_index": np.full(ep["length"], ep["task_index"], np.float64),
        }
        return {
            k: {
                "mean": np.asarray([v.mean()]),
                "std": np.asarray([v.std()]),
                "min": np.asarray([v.min()]),
                "max": np.asarray([v.max()]),
                "count": np.asarray([len(v)], np.int64),
            }
            for k, v in columns.items()
        }

    def end_episode(self, extra: dict[str, Any] | None = None) -> int:
        """Commit the episode in progress (see the module docstring for the order) and return its index."""
        ep = self._episode
        if ep is None:
            raise RuntimeError("end_episode() without start_episode()")
        if ep["length"] == 0:
            raise ValueError("the episode has no frames; call discard_episode() instead")
        self._flush()
        ep["writer"].close()
        ep["writer"] = None

        merged = {**ep["extra"], **(extra or {})}
        if "success" not in merged and ep["last"] is not None and "next.success" in ep["last"]:
            merged["success"] = bool(ep["last"]["next.success"].reshape(-1)[0])
        assets, rest = _split_assets(merged.pop("prompt_assets", {}) or {})
        if rest:
            merged["prompt_assets"] = rest
        sidecar = pa.table(
            {
                "episode_index": pa.array([ep["index"]], pa.int64()),
                "extra": pa.array([json.dumps(_to_json(merged))], pa.string()),
                "assets": pa.array([assets], pa.list_(_ASSET_TYPE)),
            }
        )
        stats = {k: st.result() for k, st in ep["stats"].items()} | self._default_stats(ep)
        row = self._episode_row(ep, stats)
        # everything that can fail on bad input is done: from here on, only publishing (module docstring)
        loc = chunk_and_file(ep["index"])
        extra_rel, extra_staged = EXTRA_PATH.format(**loc), self._staged(EXTRA_PATH.format(**loc))
        pq.write_table(sidecar, extra_staged)
        if self.fsync:  # now, so that the data file goes into place right after the row
            _fsync_file(ep["tmp"])
        _checkpoint("episode-staged", ep["index"])
        rows = [*self._rows, row.to_pylist()[0]]
        tasks = self._tasks if ep["task"] in self._tasks else [*self._tasks, ep["task"]]
        totals = aggregate_stats([self._stats, stats]) if self._stats else stats
        derived = self._stage_totals(rows, tasks, totals)  # ready, so that they follow the data at once
        if tasks is not self._tasks:
            self._write_tasks(tasks)
        self._publish_file(extra_staged, extra_rel)
        self._publish_table(EPISODES_PATH.format(**loc), row)
        self._publish_file(ep["tmp"], ep["data_rel"], "row-published", ep["index"], synced=True)  # commit
        self._rows, self._tasks, self._stats, self._episode = rows, tasks, totals, None
        _checkpoint("data-published", ep["index"])
        for staged, rel in derived:
            self._publish_file(staged, rel, synced=True)
        _checkpoint("episode-committed", ep["index"])
        return ep["index"]

    def discard_episode(self) -> None:
        """Drop the episode in progress; nothing of it stays on disk."""
        ep = self._episode
        if ep is None:
            return
        if ep["writer"] is not None:
            ep["writer"].close()
        ep["tmp"].unlink(missing_ok=True)
        self._episode = None

    def close(self) -> None:
        """Discard an unfinished episode and release the root for another recorder."""
        self.discard_episode()
        if self._lock is not None:
            with contextlib.suppress(OSError):  # a closed dataset keeps no (by now empty) staging folder
                (self.root / STAGING_DIR).rmdir()
            self._lock.close()
            self._lock = None

    def __enter__(self) -> TrajectoryRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
