"""Server side of tasks: rebuild Gymnasium spaces from their wire form and check observations against them.

The observation space a session declares in its reset is the contract for every later `act`: each
array must have exactly the declared dtype and shape, so a wrong or oversized array is refused with
a message naming the field before it reaches the model.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from agent.server.protocol import ALLOWED_DTYPES, Limits, ProtocolError
from policies.base import TaskSpec

MAX_SPACE_LEAVES = 256
MAX_SPACE_DEPTH = 8


def _fail(message: str) -> ProtocolError:
    return ProtocolError("invalid_task", message)


def declared_bytes(spec: Any, limits: Limits, path: str = "space") -> int:
    """What a space declaration would cost, from its wire form alone (nothing allocated per element).

    Gymnasium allocates several arrays of a Box's shape (bounds, masks), so a few hundred bytes of
    request could ask for gigabytes: the server adds this up for a session's spaces and for all open
    sessions and refuses a reset over its limits *before* building any space. Also bounds the leaves
    of the whole tree (not per Dict) and the depth."""
    leaves = 0

    def walk(node: Any, at: str, depth: int) -> int:
        nonlocal leaves
        if depth > MAX_SPACE_DEPTH or not isinstance(node, dict):
            raise _fail(f"{at}: expected a space map (at most {MAX_SPACE_DEPTH} levels deep)")
        kind = node.get("type")
        if kind in ("dict", "tuple"):
            items = node.get("spaces")
            children = items.items() if isinstance(items, dict) else enumerate(items or [])
            if not isinstance(items, dict | list):
                raise _fail(f"{at}: {kind} needs its sub-spaces")
            return sum(walk(v, f"{at}[{k!r}]", depth + 1) for k, v in children)
        leaves += 1
        if leaves > MAX_SPACE_LEAVES:
            raise _fail(f"{path}: more than {MAX_SPACE_LEAVES} leaf spaces in all")
        if kind == "box":
            shape, dtype = node.get("shape"), node.get("dtype")
            if not isinstance(shape, list) or any(type(d) is not int or d < 0 for d in shape):
                raise _fail(f"{at}: Box shape must be a list of non-negative ints, got {shape!r}")
            if dtype not in ALLOWED_DTYPES or len(shape) > limits.max_ndim:
                raise _fail(f"{at}: bad Box shape {shape} or dtype {dtype!r}")
            return math.prod(shape) * np.dtype(dtype).itemsize
        if kind == "multi_binary":
            n = node.get("n")
            dims = [n] if type(n) is int else n
            if not isinstance(dims, list) or any(type(d) is not int or d < 0 for d in dims):
                raise _fail(f"{at}: MultiBinary n must be an int or a list of ints")
            return math.prod(dims)
        if kind == "multi_discrete":
            nvec = node.get("nvec")
            return 8 * int(np.size(nvec)) if isinstance(nvec, np.ndarray | list) else 8
        return 8  # discrete, or an unknown type that build_space refuses by name

    return walk(spec, path, 0)


def build_space(spec: Any, limits: Limits, path: str = "space", depth: int = 0) -> gym.Space:
    """A Gymnasium space from `protocol.encode_space`'s form, refusing declarations over the limits."""
    if depth > MAX_SPACE_DEPTH or not isinstance(spec, dict):
        raise _fail(f"{path}: expected a space map (at most {MAX_SPACE_DEPTH} levels deep)")
    kind = spec.get("type")
    try:
        if kind == "box":
            shape, dtype = tuple(spec["shape"]), spec["dtype"]
            if (
                dtype not in ALLOWED_DTYPES
                or len(shape) > limits.max_ndim
                or any(type(d) is not int or d < 0 for d in shape)
            ):
                raise _fail(f"{path}: bad Box shape {shape} or dtype {dtype!r}")
            if math.prod(shape) * np.dtype(dtype).itemsize > limits.max_array_bytes:
                raise _fail(
                    f"{path}: Box {shape} {dtype} exceeds the server's array limit {limits.max_array_bytes} B"
                )
            return gym.spaces.Box(spec["low"], spec["high"], shape, np.dtype(dtype))
        if kind == "discrete":
            return gym.spaces.Discrete(int(spec["n"]), start=int(spec.get("start", 0)))
        if kind == "multi_binary":
            n = spec["n"]
            return gym.spaces.MultiBinary(int(n) if isinstance(n, int) else [int(d) for d in n])
        if kind == "multi_discrete":
            return gym.spaces.MultiDiscrete(np.asarray(spec["nvec"]), start=np.asarray(spec["start"]))
        if kind == "dict":
            items = spec["spaces"]
            if not isinstance(items, dict) or len(items) > MAX_SPACE_LEAVES:
                raise _fail(f"{path}: Dict needs at most {MAX_SPACE_LEAVES} named sub-spaces")
            return gym.spaces.Dict(
                {str(k): build_space(v, limits, f"{path}[{k!r}]", depth + 1) for k, v in items.items()}
            )
        if kind == "tuple":
            items = spec["spaces"]
            if not isinstance(items, list) or len(items) > MAX_SPACE_LEAVES:
                raise _fail(f"{path}: Tuple needs at most {MAX_SPACE_LEAVES} sub-spaces")
            return gym.spaces.Tuple(
                [build_space(v, limits, f"{path}[{i}]", depth + 1) for i, v in enumerate(items)]
            )
    except ProtocolError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise _fail(f"{path}: malformed {kind} space ({err})") from err
    raise _fail(f"{path}: unknown space type {kind!r}")


def task_bytes(spec: Any, limits: Limits) -> int:
    """Cheap checks of a wire task (fields, prompt length, declared space bytes) before anything is built;
    returns the declared bytes of its two spaces, which the server counts against its totals."""
    if not isinstance(spec, dict):
        raise _fail("task must be a map")
    prompt, assets, extra = spec.get("prompt", ""), spec.get("prompt_assets") or {}, spec.get("extra") or {}
    if not isinstance(prompt, str) or not isinstance(assets, dict) or not isinstance(extra, dict):
        raise _fail("task prompt must be a string, prompt_assets and extra maps")
    if len(prompt) > limits.max_prompt_chars:
        raise _fail(f"prompt of {len(prompt)} characters; the server's limit is {limits.max_prompt_chars}")
    seed = spec.get("seed")
    if seed is not None and type(seed) is not int:
        raise _fail("task seed must be an int or null")
    total = declared_bytes(spec.get("observation_space"), limits, "observation_space") + declared_bytes(
        spec.get("action_space"), limits, "action_space"
    )
    if total > limits.max_space_bytes:
        raise _fail(
            f"the task's spaces declare {total} bytes of arrays; the server's limit per session is "
            f"{limits.max_space_bytes} B"
        )
    return total


def decode_task(spec: Any, limits: Limits) -> TaskSpec:
    """A TaskSpec from the wire (no oracle: a server cannot call into the client's env)."""
    task_bytes(spec, limits)
    prompt, assets, extra = spec.get("prompt", ""), spec.get("prompt_assets") or {}, spec.get("extra") or {}
    seed = spec.get("seed")
    return TaskSpec(
        env_id=str(spec.get("env_id", "")),
        observation_space=build_space(spec.get("observation_space"), limits, "observation_space"),
        action_space=build_space(spec.get("action_space"), limits, "action_space"),
        prompt=prompt,
        prompt_assets=assets,
        seed=seed,
        extra=extra,
    )


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return f"{type(value).__name__} {value!r}"[:80]


def check_observation(space: gym.Space, value: Any, path: str = "obs") -> None:
    """Raise ProtocolError("invalid_observation") unless `value` has the space's structure, dtypes, shapes."""

    def bad(expected: str) -> ProtocolError:
        return ProtocolError("invalid_observation", f"{path}: expected {expected}, got {_describe(value)}")

    if isinstance(space, gym.spaces.Dict):
        if not isinstance(value, dict):
            raise bad(f"a map with keys {sorted(space.spaces)}")
        missing, extra = set(space.spaces) - set(value), set(value) - set(space.spaces)
        if missing or extra:
            raise ProtocolError(
                "invalid_observation",
                f"{path}: keys differ from the declared observation space "
                f"(missing {sorted(missing)}, unexpected {sorted(map(str, extra))})",
            )
        for key, sub in space.spaces.items():
            check_observation(sub, value[key], f"{path}[{key!r}]")
    elif isinstance(space, gym.spaces.Tuple):
        if not isinstance(value, list) or len(value) != len(space.spaces):
            raise bad(f"a list of {len(space.spaces)} items")
        for i, (sub, v) in enumerate(zip(space.spaces, value, strict=True)):
            check_observation(sub, v, f"{path}[{i}]")
    elif isinstance(space, gym.spaces.Discrete):
        if (
            isinstance(value, bool | np.bool_)
            or not isinstance(value, int | np.integer)
            or not space.contains(value)
        ):
            raise bad(f"an int in [{space.start}, {space.start + space.n})")
    elif isinstance(space, gym.spaces.Box | gym.spaces.MultiBinary | gym.spaces.MultiDiscrete):
        if not isinstance(value, np.ndarray) or value.dtype != space.dtype or value.shape != space.shape:
            raise bad(f"{space.dtype} array of shape {space.shape}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ProtocolError(
                "invalid_observation",
                f"{path}: expected finite values, got {int(np.size(value) - np.isfinite(value).sum())} "
                "NaN or infinite",
            )
    else:
        raise ProtocolError("invalid_task", f"{path}: cannot check observations of a {type(space).__name__}")
