"""The safetensors format, read (memory-mapped) and written with numpy alone.

Layout: an 8-byte little-endian header length, a JSON header {key: {dtype, shape, data_offsets}},
then the raw little-endian tensor bytes. Small enough to own, which keeps torch optional here.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import ml_dtypes
import numpy as np

from uio2_core.checkpoints.schema import CheckpointError
from uio2_core.checkpoints.tensor_source import drop_pages

_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {v: k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsSource:
    """A `.safetensors` file opened memory-mapped; `read` returns a read-only view."""

    def __init__(self, path: str | Path):
        self.name = str(path)
        size = Path(path).stat().st_size
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise CheckpointError(f"{path}: truncated safetensors file (no header)")
            (n,) = struct.unpack("<Q", raw)
            if n > min(_MAX_HEADER, size - 8):
                raise CheckpointError(f"{path}: corrupt safetensors header length {n}")
            try:
                header = json.loads(f.read(n))
            except ValueError as e:
                raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from e
        header.pop("__metadata__", None)
        self._entries: dict[str, tuple[np.dtype, tuple[int, ...], int, int]] = {}
        for key, info in header.items():
            if info["dtype"] not in _DTYPES:
                raise CheckpointError(f"{path}: key {key!r} has unsupported dtype {info['dtype']}")
            begin, end = info["data_offsets"]
            dtype, shape = _DTYPES[info["dtype"]], tuple(info["shape"])
            if end - begin != int(np.prod(shape)) * dtype.itemsize or 8 + n + end > size:
                raise CheckpointError(f"{path}: key {key!r} lies outside the file (truncated?)")
            self._entries[key] = (dtype, shape, 8 + n + begin, 8 + n + end)
        self._map = np.memmap(path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: e[1] for k, e in self._entries.items()}

    def dtype(self, key: str) -> np.dtype:
        return self._entries[key][0]

    def read(self, key: str) -> np.ndarray:
        dtype, shape, begin, end = self._entries[key]
        return self._map[begin:end].view(dtype).reshape(shape)

    def release(self, key: str) -> None:
        _, _, begin, end = self._entries[key]
        if end > begin:
            drop_pages(self._map.ctypes.data + begin, end - begin)

    def close(self) -> None:
        self._map = np.zeros(0, np.uint8)


def save_safetensors(
    tensors: dict[str, np.ndarray], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """Write tensors one after another (only one contiguous copy in flight)."""
    header: dict[str, dict] = {}
    offset = 0
    for key, x in tensors.items():
        dtype = np.dtype(x.dtype).newbyteorder("<") if x.dtype.kind in "fiu" else np.dtype(x.dtype)
        if dtype not in _NAMES:
            raise ValueError(f"cannot store dtype {x.dtype} of {key!r} in safetensors")
        nbytes = int(np.prod(x.shape)) * dtype.itemsize
        header[key] = {
            "dtype": _NAMES[dtype],
            "shape": list(x.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    if metadata:
        header["__metadata__"] = metadata
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for key, x in tensors.items():
            f.write(np.ascontiguousarray(x, dtype=_DTYPES[header[key]["dtype"]]).reshape(-1).view(np.uint8))
