"""Feature schemas and frame conversion for recording PointNav and VIMA-style rollouts.

The key names follow LeRobot's conventions (`observation.images.<view>`, `action`, `next.reward`,
`next.done`, `next.success`) so recorded rollouts look like `lerobot-eval --eval.recording` output.
Images are HWC uint8 (LeRobot's `image` dtype); VIMA's CHW views are transposed on the way in.

The env-side constants are repeated here on purpose: importing `envs.tabletop` pulls in pybullet and
its task registry, which a reader of recorded data should not need.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

POINTNAV_ACTION_NAMES = ("STOP", "MOVE_FORWARD", "TURN_LEFT", "TURN_RIGHT")
VIMA_ACTION_KEYS = ("pose0_position", "pose0_rotation", "pose1_position", "pose1_rotation")
_VIMA_KEY_SIZES = {"pose0_position": 2, "pose0_rotation": 4, "pose1_position": 2, "pose1_rotation": 4}
_AXES = {2: ("x", "y"), 4: ("x", "y", "z", "w")}
VIMA_ACTION_NAMES = [f"{k}.{axis}" for k in VIMA_ACTION_KEYS for axis in _AXES[_VIMA_KEY_SIZES[k]]]
IMAGE_NAMES = ["height", "width", "channels"]

# Per-frame keys the recorder adds itself (LeRobot's DEFAULT_FEATURES).
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


def _feature(dtype: str, shape: tuple[int, ...] | list[int], names: list[str] | None) -> dict[str, Any]:
    return {"dtype": dtype, "shape": [int(s) for s in shape], "names": names}


def is_vima_observation_space(observation_space: spaces.Space) -> bool:
    """VIMA-style observations hold a dict of camera views under `rgb`; PointNav holds one image."""
    return isinstance(observation_space, spaces.Dict) and isinstance(
        observation_space.spaces.get("rgb"), spaces.Dict
    )


def _strided(size: int, stride: int) -> int:
    return -(-size // stride)


def features_for(
    observation_space: spaces.Space, action_space: spaces.Space, depth_stride: int = 1
) -> dict[str, dict[str, Any]]:
    """LeRobot feature schema (without the default per-frame keys) for one of our env families.

    `depth_stride` keeps every n-th depth pixel per axis: full-size float32 depth costs 256 KB a frame.
    """
    if depth_stride < 1:
        raise ValueError(f"depth_stride must be >= 1, got {depth_stride}")
    if not isinstance(observation_space, spaces.Dict):
        raise ValueError(f"expected a Dict observation space, got {observation_space}")
    obs = observation_space.spaces
    out: dict[str, dict[str, Any]] = {}
    if is_vima_observation_space(observation_space):
        for view, box in obs["rgb"].spaces.items():
            c, h, w = box.shape
            out[f"observation.images.{view}"] = _feature("image", (h, w, c), IMAGE_NAMES)
        segm = obs.get("segm")
        if isinstance(segm, spaces.Dict):  # body ids per pixel: what finds the scene's objects
            for view, box in segm.spaces.items():
                out[f"observation.segm.{view}"] = _feature("image", (*box.shape[:2], 1), IMAGE_NAMES)
        if "ee" in obs:
            out["observation.ee"] = _feature("int64", (1,), ["ee"])
    else:
        if "rgb" in obs:
            out["observation.images.rgb"] = _feature("image", obs["rgb"].shape, IMAGE_NAMES)
        if "depth" in obs:
            h, w, c = obs["depth"].shape
            shape = (_strided(h, depth_stride), _strided(w, depth_stride), c)
            out["observation.depth"] = _feature("float32", shape, IMAGE_NAMES)
        if "pointgoal_with_gps_compass" in obs:
            out["observation.pointgoal_with_gps_compass"] = _feature("float32", (2,), ["rho", "phi"])
        if "audio" in obs:
            out["observation.audio"] = _feature("float32", obs["audio"].shape, ["channels", "samples"])
    if isinstance(action_space, spaces.Discrete):
        out["action"] = _feature("int64", (1,), ["discrete_action"])
    elif isinstance(action_space, spaces.Dict) and set(action_space.spaces) == set(VIMA_ACTION_KEYS):
        out["action"] = _feature("float32", (len(VIMA_ACTION_NAMES),), list(VIMA_ACTION_NAMES))
    else:
        raise ValueError(f"unsupported action space {action_space}; expected Discrete or VIMA's pose Dict")
    out["next.reward"] = _feature("float32", (1,), None)
    out["next.done"] = _feature("bool", (1,), None)
    out["next.success"] = _feature("bool", (1,), None)
    return out


def action_to_row(action: Any) -> np.ndarray:
    """An env action as the stored `action` value: int64 (1,) or VIMA's float32 (12,) pose vector."""
    if isinstance(action, dict):
        missing = [k for k in VIMA_ACTION_KEYS if k not in action]
        if missing:
            raise ValueError(f"VIMA action is missing {missing}; expected keys {list(VIMA_ACTION_KEYS)}")
        parts = [np.asarray(action[k], np.float32).reshape(-1) for k in VIMA_ACTION_KEYS]
        for key, part in zip(VIMA_ACTION_KEYS, parts, strict=True):
            if part.size != _VIMA_KEY_SIZES[key]:
                raise ValueError(f"action[{key!r}] has {part.size} values, expected {_VIMA_KEY_SIZES[key]}")
        return np.concatenate(parts)
    return np.asarray([int(np.asarray(action).reshape(()))], np.int64)


def action_from_row(value: Any) -> int | dict[str, np.ndarray]:
    """Inverse of `action_to_row`: a stored action back into what the env's `step` takes."""
    arr = np.asarray(value)
    if arr.size == 1 and np.issubdtype(arr.dtype, np.integer):
        return int(arr.reshape(()))
    if arr.size == len(VIMA_ACTION_NAMES):
        flat = arr.reshape(-1).astype(np.float32)
        out, start = {}, 0
        for key in VIMA_ACTION_KEYS:
            size = _VIMA_KEY_SIZES[key]
            out[key] = flat[start : start + size].copy()
            start += size
        return out
    raise ValueError(f"cannot decode action of shape {arr.shape} and dtype {arr.dtype}")


def describe_action(value: Any) -> str:
    """A short human-readable action, for video overlays."""
    action = action_from_row(value) if not isinstance(value, dict) else value
    if isinstance(action, int):
        name = POINTNAV_ACTION_NAMES[action] if 0 <= action < len(POINTNAV_ACTION_NAMES) else "?"
        return f"{action} {name}"
    p0, p1 = np.asarray(action["pose0_position"]), np.asarray(action["pose1_position"])
    return f"pick ({p0[0]:.2f}, {p0[1]:.2f}) -> place ({p1[0]:.2f}, {p1[1]:.2f})"


def frame_from(
    obs: dict[str, Any],
    action: Any,
    reward: float,
    terminated: bool,
    truncated: bool,
    success: bool,
    *,
    task: str | None = None,
    depth_stride: int = 1,
) -> dict[str, Any]:
    """One recorder frame: the observation the action was chosen from, the action, and its outcome."""
    frame: dict[str, Any] = {}
    rgb = obs["rgb"]
    if isinstance(rgb, dict):
        for view, chw in rgb.items():
            frame[f"observation.images.{view}"] = np.ascontiguousarray(np.asarray(chw).transpose(1, 2, 0))
        for view, segm in (obs.get("segm") or {}).items():
            frame[f"observation.segm.{view}"] = np.asarray(segm, np.uint8)[..., None]
        if "ee" in obs:
            frame["observation.ee"] = np.asarray([int(obs["ee"])], np.int64)
    else:
        frame["observation.images.rgb"] = np.asarray(rgb)
        if "depth" in obs:
            depth = np.asarray(obs["depth"], np.float32)
            frame["observation.depth"] = np.ascontiguousarray(depth[::depth_stride, ::depth_stride])
        if "pointgoal_with_gps_compass" in obs:
            frame["observation.pointgoal_with_gps_compass"] = np.asarray(
                obs["pointgoal_with_gps_compass"], np.float32
            )
        if "audio" in obs:
            frame["observation.audio"] = np.asarray(obs["audio"], np.float32)
    frame["action"] = action_to_row(action)
    frame["next.reward"] = np.asarray([reward], np.float32)
    frame["next.done"] = np.asarray([bool(terminated or truncated)])
    frame["next.success"] = np.asarray([bool(success)])
    if task is not None:
        frame["task"] = task
    return frame


EXTRA_INFO_KEYS = (
    "episode_id",
    "scene_id",
    "success",
    "spl",
    "soft_spl",
    "distance_to_goal",
    "collisions",
    "num_steps",
    "sound",
    "prompt_assets",
    "meta_info",
)


def extra_from_info(info: dict[str, Any]) -> dict[str, Any]:
    """The episode-level facts worth keeping from an env's info dict (sidecar, not per frame)."""
    return {k: info[k] for k in EXTRA_INFO_KEYS if k in info}
