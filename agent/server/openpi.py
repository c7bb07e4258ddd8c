"""openpi mode: `uio2 serve --openpi-env ENV` answers unmodified openpi clients (`openpi-client` on PyPI).

openpi's policy-serving protocol (reference/openpi-protocol.md): the server sends one msgpack map of
metadata first; then each binary frame is one observation dict and each reply a dict with `actions`
and `server_timing`; numpy arrays travel as plain maps (`__ndarray__`, `data`, `dtype`, `shape`); an
error is a text frame followed by close code 1011; `reset()` sends nothing, so **a connection is an
episode**. The task (spaces, action layout) is the one ENV configured on the server; the episode's
prompt comes from the first observation's `"prompt"` (and, for tabletop, its images from
`"prompt_assets"`). Everything else goes through the same reset / act path, limits, checks and
batching as the native protocol (`server.py`).

Observation keys are the env's own, nested or joined by "/" (`"rgb/front"`), optionally prefixed with
`"observation/"` as openpi's examples do. Actions come back flat, shape (1, dim) (a horizon of one):
a Dict of Boxes is its leaves concatenated in the order the metadata's `action_layout` lists (VIMA:
pose0 position (2), pose0 rotation (4, xyzw), pose1 position (2), pose1 rotation (4)); a Discrete
action is one int64 (PointNav: 0 STOP, 1 MOVE_FORWARD, 2 TURN_LEFT, 3 TURN_RIGHT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from agent.server.protocol import ALLOWED_DTYPES, Limits, ProtocolError, encode_space, unpack_frame

VIMA_ACTION_ORDER = ("pose0_position", "pose0_rotation", "pose1_position", "pose1_rotation")
_META_KEYS = ("prompt", "prompt_assets")


# -- openpi's msgpack_numpy encoding, with our limits --
def _pack_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot send a {type(obj).__name__}")


def packb(value: Any) -> bytes:
    return msgpack.packb(value, default=_pack_default, use_bin_type=True)


def unpackb(data: Any, limits: Limits) -> dict[str, Any]:
    """An observation dict from an openpi frame; arrays checked (dtype allow-list, shape, byte count)."""
    if not isinstance(data, bytes):
        raise ProtocolError("bad_request", "observations must be binary msgpack frames, not text")

    def hook(obj: dict) -> Any:
        if b"__ndarray__" in obj:
            dtype, shape, raw = obj.get(b"dtype"), obj.get(b"shape"), obj.get(b"data")
            if dtype not in ALLOWED_DTYPES:
                raise ProtocolError(
                    "bad_request", f"array dtype {dtype!r} not allowed ({sorted(ALLOWED_DTYPES)})"
                )
            if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
                raise ProtocolError(
                    "bad_request", f"array shape must be a list of non-negative ints: {shape!r}"
                )
            if len(shape) > limits.max_ndim:
                raise ProtocolError(
                    "bad_request", f"array has {len(shape)} dims; the limit is {limits.max_ndim}"
                )
            nbytes = math.prod(shape) * np.dtype(dtype).itemsize
            if nbytes > limits.max_array_bytes or not isinstance(raw, bytes) or len(raw) != nbytes:
                raise ProtocolError(
                    "bad_request",
                    f"array of shape {tuple(shape)} {dtype} needs {nbytes} bytes of data "
                    f"(limit {limits.max_array_bytes})",
                )
            return np.frombuffer(raw, np.dtype(dtype)).reshape(shape).copy()
        if b"__npgeneric__" in obj:
            dtype, value = obj.get(b"dtype"), obj.get(b"data")
            if dtype not in ALLOWED_DTYPES or not isinstance(value, bool | int | float):
                raise ProtocolError("bad_request", f"numpy scalar of dtype {dtype!r} not allowed")
            return np.dtype(dtype).type(value)
        return obj

    message = unpack_frame(data, object_hook=hook)
    if not isinstance(message, dict) or not all(isinstance(k, str) for k in message):
        raise ProtocolError("bad_request", "an observation must be a map with string keys")
    return message


# -- the configured task --
def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{"rgb/front": a} -> {"rgb": {"front": a}}; nested maps pass through."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.removeprefix("observation/").split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ProtocolError(
                    "invalid_observation", f"observation key {key!r} clashes with another key"
                )
        if leaf in node:
            raise ProtocolError("invalid_observation", f"observation key {key!r} given twice")
        node[leaf] = value
    return out


def _layout(space: Any) -> list[dict[str, Any]]:
    kind = type(space).__name__
    if kind == "Discrete":
        return [{"name": "action", "start": 0, "size": 1, "dtype": "int64", "n": int(space.n)}]
    if kind == "Dict" and all(type(s).__name__ == "Box" and len(s.shape) == 1 for s in space.spaces.values()):
        names = list(VIMA_ACTION_ORDER) if set(space.spaces) == set(VIMA_ACTION_ORDER) else list(space.spaces)
        out, start = [], 0
        for name in names:
            size = int(space[name].shape[0])
            out.append({"name": name, "start": start, "size": size, "dtype": "float32"})
            start += size
        return out
    raise ValueError(f"openpi mode cannot lay out the action space {space} flat")


@dataclass
class OpenPIEnv:
    """The one task an openpi-mode server serves: its spaces and the flat action layout."""

    env_id: str
    observation_space: Any
    action_space: Any
    layout: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_env(cls, env_id: str, **env_kwargs: Any) -> OpenPIEnv:
        from agent.envs import resolve_env

        env = resolve_env(env_id, **env_kwargs)[0].make()
        try:
            return cls.from_spaces(env_id, env.observation_space, env.action_space)
        finally:
            env.close()

    @classmethod
    def from_spaces(cls, env_id: str, observation_space: Any, action_space: Any) -> OpenPIEnv:
        return cls(env_id, observation_space, action_space, _layout(action_space))

    def metadata(self, **extra: Any) -> dict[str, Any]:
        return {
            "server": "uio2-embodied",
            "protocol": "openpi",
            "env": self.env_id,
            "action_layout": self.layout,
            "action_horizon": 1,
            "observation_space": encode_space(self.observation_space),
            **extra,
        }

    def split(self, raw: dict[str, Any]) -> tuple[dict[str, Any], str | None, Any]:
        """(observation in the env's nested form, prompt or None, prompt assets or None)."""
        nested = _nest(raw)
        prompt, assets = nested.pop("prompt", None), nested.pop("prompt_assets", None)
        if prompt is not None and not isinstance(prompt, str):
            raise ProtocolError("invalid_observation", "obs['prompt'] must be a string")
        if assets is not None and not isinstance(assets, dict):
            raise ProtocolError("invalid_observation", "obs['prompt_assets'] must be a map")
        return nested, prompt, assets

    def wire_task(self, prompt: str, assets: dict[str, Any] | None) -> dict[str, Any]:
        """The task in the native protocol's wire form, so it takes the server's usual reset path."""
        return {
            "env_id": self.env_id,
            "observation_space": encode_space(self.observation_space),
            "action_space": encode_space(self.action_space),
            "prompt": prompt,
            "prompt_assets": assets or {},
            "seed": None,
            "extra": {},
        }

    def flat_action(self, action: Any) -> np.ndarray:
        if self.layout[0]["name"] == "action":
            return np.array([[int(action)]], np.int64)
        parts = [np.asarray(action[e["name"]], np.float32).reshape(e["size"]) for e in self.layout]
        return np.concatenate(parts)[None, :]
