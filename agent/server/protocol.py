"""Wire format of the policy server: msgpack messages with a typed, pickle-free encoding of numpy data.

Shared by the server and the jax-free client, so it imports only numpy and msgpack. Arrays travel as
a msgpack extension holding (dtype string, shape, codec, bytes): the dtype must be on a short
allow-list (no object dtype, so nothing is ever unpickled), the shape is bounded before any memory is
allocated, and the optional zlib codec is inflated only up to the size the shape declares.

Messages (maps; `id` pairs a reply with its request):

    server -> client on connect: {"op": "hello", "version", "policy", "model", "limits", ...}
    {"op": "reset", "id", "items": [{"session": int | None, "task": TASK}]}  -> {"sessions": [...]}
    {"op": "act",   "id", "items": [{"session": int, "obs": OBS, "info": INFO?}]}
                                                         -> {"results": [{"action", "info"}]}
    {"op": "close", "id", "sessions": [...]}
    every reply: {"op": "reply", "id", "ok": true, ...} or {"ok": false, "error": {"code", "message"}}

TASK = {"env_id", "observation_space": SPACE, "action_space": SPACE, "prompt", "prompt_assets",
"seed", "extra"}; SPACE is the small typed form of a Gymnasium space made by `encode_space`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
EXT_NDARRAY = 1
EXT_SCALAR = 2
ALLOWED_DTYPES = frozenset(
    ["|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8"]
)
CODECS = ("raw", "zlib")
_COMPRESS_MIN_BYTES = 1024


@dataclass(frozen=True)
class Limits:
    """What one peer accepts; the server sends its limits in `hello` so clients can check first."""

    max_message_bytes: int = 32 * 2**20
    max_array_bytes: int = 16 * 2**20
    max_ndim: int = 8
    max_items: int = 256  # rows in one reset/act request
    max_space_bytes: int = 32 * 2**20  # declared array bytes of one session's observation + action spaces
    max_prompt_chars: int = 4096  # a task's prompt (the UIO2 backend also bounds its tokens)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class ProtocolError(ValueError):
    """A request the server refuses; `code` is machine-readable, the message says what to fix."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# -- arrays --
def _dtype_str(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype.byteorder == ">":
        dtype = dtype.newbyteorder("<")
    s = dtype.str
    if s not in ALLOWED_DTYPES:
        raise ProtocolError(
            "bad_request", f"dtype {dtype} is not allowed on the wire ({sorted(ALLOWED_DTYPES)})"
        )
    return s


def _pack_array(arr: np.ndarray, compress: bool) -> msgpack.ExtType:
    dtype = _dtype_str(arr.dtype)
    data = np.ascontiguousarray(arr, dtype=np.dtype(dtype)).tobytes()
    codec = "raw"
    if compress and arr.dtype.kind in "biu" and len(data) >= _COMPRESS_MIN_BYTES:
        packed = zlib.compress(data, 1)
        if len(packed) < len(data):
            data, codec = packed, "zlib"
    return msgpack.ExtType(EXT_NDARRAY, msgpack.packb([dtype, list(arr.shape), codec, data]))


def _pack_scalar(value: np.generic) -> msgpack.ExtType:
    dtype = _dtype_str(value.dtype)
    return msgpack.ExtType(EXT_SCALAR, msgpack.packb([dtype, np.asarray(value, np.dtype(dtype)).tobytes()]))


def _inflate(data: bytes, expected: int) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, expected + 1)
    if len(out) != expected or inflater.unconsumed_tail:
        raise ProtocolError(
            "bad_request", f"zlib array inflates to more or fewer than the {expected} bytes declared"
        )
    return out


def _unpack_array(payload: bytes, limits: Limits) -> np.ndarray:
    fields = msgpack.unpackb(payload, raw=False)
    if not (isinstance(fields, list) and len(fields) == 4):
        raise ProtocolError("bad_request", "array extension must be [dtype, shape, codec, data]")
    dtype, shape, codec, data = fields
    if dtype not in ALLOWED_DTYPES:
        raise ProtocolError(
            "bad_request", f"array dtype {dtype!r} not allowed (allowed: {sorted(ALLOWED_DTYPES)})"
        )
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise ProtocolError("bad_request", f"array shape must be a list of non-negative ints, got {shape!r}")
    if len(shape) > limits.max_ndim:
        raise ProtocolError("bad_request", f"array has {len(shape)} dims; the limit is {limits.max_ndim}")
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    if nbytes > limits.max_array_bytes:
        raise ProtocolError(
            "bad_request",
            f"array of shape {tuple(shape)} {dtype} is {nbytes} bytes; limit {limits.max_array_bytes}",
        )
    if codec not in CODECS or not isinstance(data, bytes):
        raise ProtocolError("bad_request", f"array codec must be one of {CODECS} with bytes data")
    if codec == "zlib":
        data = _inflate(data, nbytes)
    if len(data) != nbytes:
        raise ProtocolError(
            "bad_request", f"array of shape {tuple(shape)} {dtype} needs {nbytes} bytes, got {len(data)}"
        )
    if nbytes == 0:
        return np.zeros(shape, np.dtype(dtype))
    return np.frombuffer(data, np.dtype(dtype)).reshape(shape).copy()


def _unpack_scalar(payload: bytes) -> np.generic:
    fields = msgpack.unpackb(payload, raw=False)
    if not (isinstance(fields, list) and len(fields) == 2 and fields[0] in ALLOWED_DTYPES):
        raise ProtocolError("bad_request", "scalar extension must be [allowed dtype, data]")
    dtype = np.dtype(fields[0])
    if not isinstance(fields[1], bytes) or len(fields[1]) != dtype.itemsize:
        raise ProtocolError("bad_request", f"scalar {dtype} needs {dtype.itemsize} bytes")
    return np.frombuffer(fields[1], dtype)[0]


# -- messages --
def encode(message: Mapping[str, Any], *, compress: bool = False) -> bytes:
    """msgpack bytes; numpy arrays and scalars become typed extensions (zlib for integer images if asked)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return _pack_array(obj, compress)
        if isinstance(obj, np.generic):
            return _pack_scalar(obj)
        raise ProtocolError(
            "bad_request",
            f"cannot send a value of type {type(obj).__name__} (arrays, numbers, "
            "strings, bytes, lists and dicts only)",
        )

    return msgpack.packb(message, default=default, use_bin_type=True)


def decode(data: bytes, limits: Limits | None = None) -> dict[str, Any]:
    """The message map, or ProtocolError("bad_request") for anything malformed or over the limits."""
    limits = limits or Limits()
    if not isinstance(data, bytes):
        raise ProtocolError("bad_request", "messages must be binary msgpack frames, not text")
    if len(data) > limits.max_message_bytes:
        raise ProtocolError("bad_request", f"message of {len(data)} bytes; limit {limits.max_message_bytes}")

    def ext_hook(code: int, payload: bytes) -> Any:
        if code == EXT_NDARRAY:
            return _unpack_array(payload, limits)
        if code == EXT_SCALAR:
            return _unpack_scalar(payload)
        raise ProtocolError("bad_request", f"unknown msgpack extension type {code}")

    message = unpack_frame(data, ext_hook=ext_hook)
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ProtocolError("bad_request", "a message must be a map with a string 'op'")
    return message


def unpack_frame(data: bytes, **hooks: Any) -> Any:
    """msgpack-decode one frame with the given hooks; malformed input of any kind is a bad_request (msgpack
    raises several exception types for it), and a hook's own ProtocolError passes through unchanged."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, **hooks)
    except ProtocolError:
        raise
    except Exception as err:
        raise ProtocolError("bad_request", f"malformed msgpack frame: {err}") from err


def error_reply(request_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"op": "reply", "id": request_id, "ok": False, "error": {"code": code, "message": message}}


# -- spaces and tasks (duck-typed: the client does not import gymnasium) --
def _bound(values: np.ndarray) -> Any:
    """A Box bound: one scalar when uniform (most image spaces), else the array."""
    flat = values.reshape(-1)
    if flat.size and bool(np.all(flat == flat[0])):
        return flat[0]
    return values


def encode_space(space: Any) -> dict[str, Any]:
    """The small typed form of a Gymnasium space (Box, Discrete, MultiBinary, MultiDiscrete, Dict, Tuple)."""
    kind = type(space).__name__
    if kind == "Box":
        return {
            "type": "box",
            "low": _bound(np.asarray(space.low)),
            "high": _bound(np.asarray(space.high)),
            "shape": list(space.shape),
            "dtype": _dtype_str(space.dtype),
        }
    if kind == "Discrete":
        return {"type": "discrete", "n": int(space.n), "start": int(space.start)}
    if kind == "MultiBinary":
        n = space.n
        return {"type": "multi_binary", "n": int(n) if np.ndim(n) == 0 else [int(d) for d in n]}
    if kind == "MultiDiscrete":
        return {"type": "multi_discrete", "nvec": np.asarray(space.nvec), "start": np.asarray(space.start)}
    if kind == "Dict":
        return {"type": "dict", "spaces": {k: encode_space(s) for k, s in space.spaces.items()}}
    if kind == "Tuple":
        return {"type": "tuple", "spaces": [encode_space(s) for s in space.spaces]}
    raise ProtocolError(
        "bad_request",
        f"cannot send a {kind} space (Box, Discrete, MultiBinary, MultiDiscrete, Dict and Tuple only)",
    )


def encode_task(task: Any) -> dict[str, Any]:
    """A TaskSpec (or any object / mapping with its fields) as a message field.

    The oracle is never sent: it is a callable into the client's env, which a server cannot call."""
    get = task.get if isinstance(task, Mapping) else lambda k, d=None: getattr(task, k, d)
    return {
        "env_id": str(get("env_id", "")),
        "observation_space": encode_space(get("observation_space")),
        "action_space": encode_space(get("action_space")),
        "prompt": str(get("prompt", "") or ""),
        "prompt_assets": dict(get("prompt_assets", None) or {}),
        "seed": None if get("seed", None) is None else int(get("seed")),
        "extra": dict(get("extra", None) or {}),
    }
