"""Read recorded trajectories (LeRobotDataset v3.0 layout) into numpy, without torch or lerobot.

Trust model (see agent.recording for the write order): an episode exists when its row in
`meta/episodes/` and its data file both exist (the row is published first, so a crash between the two
leaves a newest row without data, which is not read). Everything else is derived from those rows: data
files without an episode row are ignored, a task list that runs ahead is cut to the tasks in use, and
`info.json` / `stats.json` totals that lag behind the rows are recomputed. Each value of
`episode(i)` is an array of shape (length, *feature shape); images come back as uint8 HWC.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EXTRA_PATH = "meta/episodes_extra/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
STAT_NAMES = ("mean", "std", "min", "max", "count")


class NotADatasetError(ValueError):
    """Raised for a directory that holds no recorded dataset."""


# -- shared helpers (also used by the recorder) ---------------------------------------------------------
def chunk_and_file(episode_index: int) -> dict[str, int]:
    """One data file per episode: episode k lives in chunk k // 1000, file k % 1000."""
    return {"chunk_index": episode_index // CHUNKS_SIZE, "file_index": episode_index % CHUNKS_SIZE}


def read_info(root: Path) -> dict[str, Any]:
    path = root / INFO_PATH
    if not path.is_file():
        raise NotADatasetError(f"{root} is not a recorded dataset: {INFO_PATH} is missing")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise NotADatasetError(f"{path} is not valid JSON: {err}") from err
    if info.get("codebase_version") != CODEBASE_VERSION:
        raise NotADatasetError(
            f"{root}: codebase_version {info.get('codebase_version')!r}; "
            f"only {CODEBASE_VERSION!r} is supported"
        )
    return info


def read_episode_rows(root: Path) -> list[dict[str, Any]]:
    """Every committed episode row, sorted by episode index (temp files of a crashed commit are skipped)."""
    rows: list[dict[str, Any]] = []
    for path in sorted((root / "meta" / "episodes").glob("chunk-*/*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    rows.sort(key=lambda r: r["episode_index"])
    for k, row in enumerate(rows):
        if row["episode_index"] != k:
            raise ValueError(
                f"{root}: episode rows are not contiguous (row {k} has episode_index {row['episode_index']})"
            )
    return rows


def episode_stats(row: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """The flattened `stats/<feature>/<stat>` columns of an episode row, as nested numpy arrays."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, value in row.items():
        if not key.startswith("stats/") or value is None:
            continue
        feature, _, stat = key[len("stats/") :].rpartition("/")
        out.setdefault(feature, {})[stat] = np.asarray(value, np.int64 if stat == "count" else np.float64)
    return out


def aggregate_stats(per_episode: list[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict[str, np.ndarray]]:
    """Exact pooled mean/std/min/max/count over episodes (parallel-variance formula, as LeRobot does)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    keys = sorted({k for stats in per_episode for k in stats})
    for key in keys:
        parts = [s[key] for s in per_episode if key in s]
        counts = [float(p["count"].reshape(-1)[0]) for p in parts]
        total = sum(counts)
        if total == 0:
            continue
        mean = sum(n * p["mean"] for n, p in zip(counts, parts, strict=True)) / total
        var = sum(n * (p["std"] ** 2 + (p["mean"] - mean) ** 2) for n, p in zip(counts, parts, strict=True))
        out[key] = {
            "mean": mean,
            "std": np.sqrt(np.maximum(var / total, 0.0)),
            "min": np.min(np.stack([p["min"] for p in parts]), axis=0),
            "max": np.max(np.stack([p["max"] for p in parts]), axis=0),
            "count": np.asarray([int(total)], np.int64),
        }
    return out


def tasks_from_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Task strings in task-index order: the order of first appearance among committed episodes."""
    tasks: list[str] = []
    seen: set[str] = set()
    for row in rows:
        for task in row["tasks"]:
            if task not in seen:
                seen.add(task)
                tasks.append(task)
    return tasks


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def column_to_numpy(column: pa.ChunkedArray | pa.Array, feature: dict[str, Any]) -> np.ndarray:
    """A stored column as (rows, *shape): images decoded, nested fixed-size lists reshaped."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    shape = tuple(feature["shape"])
    if feature["dtype"] == "image":
        images = [decode_png(b) for b in column.field("bytes").to_pylist()]
        return np.stack(images).reshape(-1, *shape) if images else np.zeros((0, *shape), np.uint8)
    values = column
    while pa.types.is_fixed_size_list(values.type) or pa.types.is_list(values.type):
        values = values.flatten()
    dtype = np.dtype(feature["dtype"])
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype).reshape((len(column), *shape))


def _decode_json(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"]).reshape(value["shape"])
        return {k: _decode_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_json(v) for v in value]
    return value


def read_extra(path: Path) -> dict[str, Any]:
    """The sidecar row of one episode: JSON extras plus prompt-asset images put back in place."""
    row = pq.read_table(path).to_pylist()[0]
    extra = _decode_json(json.loads(row["extra"]))
    for asset in row["assets"] or []:
        image = decode_png(asset["png"])
        if asset["chw"]:
            image = np.ascontiguousarray(image.transpose(2, 0, 1))
        slot = extra.setdefault("prompt_assets", {}).setdefault(asset["name"], {})
        slot.setdefault(asset["modality"], {})[asset["view"]] = image
    return extra


# -- the reader -----------------------------------------------------------------------------------------
class TrajectoryDataset:
    """A recorded dataset opened for reading; see the module docstring for what is trusted."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise NotADatasetError(f"{self.root} is not a directory")
        info = read_info(self.root)
        self._rows = read_episode_rows(self.root)
        if self._rows and not (self.root / self._data_path(info, self._rows[-1])).is_file():
            self._rows.pop()  # a commit cut between its row and its data file: not committed
        self.features: dict[str, dict[str, Any]] = info["features"]
        self.fps: int = int(info["fps"])
        self.tasks: list[str] = self._read_tasks()
        info["total_episodes"] = len(self._rows)
        info["total_frames"] = sum(int(r["length"]) for r in self._rows)
        info["total_tasks"] = len(self.tasks)
        info["splits"] = {"train": f"0:{len(self._rows)}"}
        self.info = info
        self._stats: dict[str, dict[str, np.ndarray]] | None = None

    def _read_tasks(self) -> list[str]:
        derived = tasks_from_rows(self._rows)
        path = self.root / TASKS_PATH
        if path.is_file():
            table = pq.read_table(path)
            pairs = sorted(zip(table["task_index"].to_pylist(), table["task"].to_pylist(), strict=True))
            stored = [t for _, t in pairs]
            if stored[: len(derived)] == derived:
                return derived  # ours: a task of an uncommitted episode may trail
            if set(derived) <= set(stored) and [i for i, _ in pairs] == list(range(len(pairs))):
                return stored
        return derived

    @staticmethod
    def _data_path(info: dict[str, Any], row: dict[str, Any]) -> Path:
        return Path(
            info["data_path"].format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])
        )

    @property
    def num_episodes(self) -> int:
        return len(self._rows)

    @property
    def num_frames(self) -> int:
        return int(self.info["total_frames"])

    def __len__(self) -> int:
        return self.num_frames

    @property
    def stats(self) -> dict[str, dict[str, np.ndarray]]:
        """`stats.json` as arrays, recomputed from the episode rows when it lags behind them."""
        if self._stats is None:
            path = self.root / STATS_PATH
            stats: dict[str, dict[str, np.ndarray]] = {}
            if path.is_file():
                raw = json.loads(path.read_text())
                stats = {k: {s: np.asarray(v) for s, v in d.items()} for k, d in raw.items()}
            counts = {int(d["count"].reshape(-1)[0]) for d in stats.values() if "count" in d}
            if counts != {self.num_frames}:
                stats = aggregate_stats([episode_stats(r) for r in self._rows])
            self._stats = stats
        return self._stats

    def episode_row(self, i: int) -> dict[str, Any]:
        """The episode's metadata row (offsets, length, tasks, flattened stats)."""
        if not 0 <= i < len(self._rows):
            raise IndexError(f"episode {i} out of range: the dataset has {len(self._rows)} episodes")
        return self._rows[i]

    def episode(self, i: int) -> dict[str, np.ndarray]:
        """Every column of episode i as (length, *shape) arrays, plus `task` (one string per frame)."""
        row = self.episode_row(i)
        path = self.root / self._data_path(self.info, row)
        table = pq.read_table(path, filters=[("episode_index", "=", i)])
        if table.num_rows != row["length"]:
            raise ValueError(
                f"{path}: episode {i} has {table.num_rows} frames, its metadata says {row['length']}"
            )
        out = {
            key: column_to_numpy(table[key], ft)
            for key, ft in self.features.items()
            if key in table.column_names
        }
        out["task"] = np.asarray([self.tasks[t] for t in out["task_index"].reshape(-1)])
        return out

    def episode_extra(self, i: int) -> dict[str, Any]:
        """The episode's sidecar (seed, env id, metrics, prompt assets, ...); {} if none was written."""
        self.episode_row(i)
        path = self.root / EXTRA_PATH.format(**chunk_and_file(i))
        return read_extra(path) if path.is_file() else {}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Frames in dataset order, one dict per frame (an episode is decoded at a time)."""
        for i in range(self.num_episodes):
            ep = self.episode(i)
            for t in range(len(ep["index"])):
                yield {key: value[t] for key, value in ep.items()}


def open_dataset(root: str | Path) -> TrajectoryDataset:
    """Open a recorded dataset; raises NotADatasetError for a directory that is not one."""
    return TrajectoryDataset(root)
