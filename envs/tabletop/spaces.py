"""Observation and action spaces shared by our tabletop suite and the VIMA-Bench adapter.

Kept free of pybullet and vima_bench imports so the adapter can declare identical spaces even when the
real benchmark is not installed (a test compares them).
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

IMAGE_HEIGHT = 128
IMAGE_WIDTH = 256
VIEWS: tuple[str, ...] = ("front", "top")
MODALITIES: tuple[str, ...] = ("rgb", "segm")
ACTION_KEYS: tuple[str, ...] = ("pose0_position", "pose0_rotation", "pose1_position", "pose1_rotation")
POSITION_LOW = np.array([0.25, -0.5], dtype=np.float32)
POSITION_HIGH = np.array([0.75, 0.5], dtype=np.float32)
ACTION_BOUNDS = {"low": POSITION_LOW.copy(), "high": POSITION_HIGH.copy()}
END_EFFECTORS: tuple[str, ...] = ("suction", "spatula")


def observation_space() -> spaces.Dict:
    """The benchmark's observation dict: CHW uint8 rgb and uint8 body-id segm per view, plus the ee flag."""
    rgb = spaces.Dict({v: spaces.Box(0, 255, (3, IMAGE_HEIGHT, IMAGE_WIDTH), dtype=np.uint8) for v in VIEWS})
    segm = spaces.Dict({v: spaces.Box(0, 255, (IMAGE_HEIGHT, IMAGE_WIDTH), dtype=np.uint8) for v in VIEWS})
    return spaces.Dict({"rgb": rgb, "segm": segm, "ee": spaces.Discrete(2)})


def action_space() -> spaces.Dict:
    """Two SE(2) poses as 2-D positions (metres, robot base frame) and XYZW quaternions, all float32."""
    pos = {"low": POSITION_LOW, "high": POSITION_HIGH, "shape": (2,), "dtype": np.float32}
    rot = {"low": -1.0, "high": 1.0, "shape": (4,), "dtype": np.float32}
    return spaces.Dict(
        {
            "pose0_position": spaces.Box(**pos),
            "pose0_rotation": spaces.Box(**rot),
            "pose1_position": spaces.Box(**pos),
            "pose1_rotation": spaces.Box(**rot),
        }
    )


def sanitize_action(action: object) -> dict[str, np.ndarray]:
    """Validate and normalise a policy action the way the benchmark's scripts do.

    Wrong keys, wrong shapes and non-finite values raise ``ValueError`` (a clear error instead of a
    simulator crash); any float dtype is cast to float32, positions are clipped to the workspace bounds and
    rotations are clipped to [-1, 1] and renormalised (a zero quaternion becomes the identity).
    """
    if not hasattr(action, "keys"):
        raise ValueError(f"action must be a dict with keys {ACTION_KEYS}, got {type(action).__name__}")
    keys = set(action.keys())  # type: ignore[union-attr]
    if keys != set(ACTION_KEYS):
        missing = sorted(set(ACTION_KEYS) - keys)
        extra = sorted(str(k) for k in keys - set(ACTION_KEYS))
        raise ValueError(f"action keys must be {list(ACTION_KEYS)}; missing {missing}, unexpected {extra}")
    out: dict[str, np.ndarray] = {}
    for key in ACTION_KEYS:
        try:
            arr = np.asarray(action[key], dtype=np.float64)  # type: ignore[index]
        except (TypeError, ValueError) as err:
            raise ValueError(f"action[{key!r}] is not numeric: {err}") from err
        size = 2 if key.endswith("position") else 4
        if arr.shape != (size,):
            raise ValueError(f"action[{key!r}] must have shape ({size},), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"action[{key!r}] contains NaN or inf: {arr.tolist()}")
        if size == 2:
            arr = np.clip(arr, POSITION_LOW, POSITION_HIGH)
        else:
            arr = np.clip(arr, -1.0, 1.0)
            norm = float(np.linalg.norm(arr))
            arr = np.array([0.0, 0.0, 0.0, 1.0]) if norm < 1e-6 else arr / norm
        out[key] = arr.astype(np.float32)
    return out
