"""The decision record: what the policy saw and chose at one step, as JSON in a `std_msgs/String`.

The node publishes one on `~/decision` per policy step and the bag recorder keeps it, so a robot
rollout can be turned back into a training dataset exactly: which camera frames (by header stamp) and
which point goal the policy saw, and the action it decoded. Standard message types only, so any ROS
tool (`ros2 topic echo`, Foxglove) can read it too.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

FAMILIES = ("pointnav", "vima")
VIMA_KEYS = ("pose0_position", "pose0_rotation", "pose1_position", "pose1_rotation")


@dataclass
class Decision:
    episode: int  # increments when the robot is enabled or gets a new goal / instruction
    step: int  # 0-based within the episode
    family: str  # "pointnav" (discrete navigation) or "vima" (pick and place)
    text: str  # the decoded action text
    fallback: bool  # True: the output did not parse; nothing was commanded
    action: int | dict | None  # pointnav: 0..3; vima: {pose key: list of floats}
    instruction: str = ""
    image_topics: dict = field(default_factory=dict)  # view -> topic
    image_stamps_ns: dict = field(default_factory=dict)  # view -> header stamp of the frame used
    pointgoal: list | None = None  # [rho, phi] (pointnav)
    decision_ms: float = 0.0

    def to_json(self) -> str:
        """Strict JSON whatever the fields hold: non-finite numbers become null (never an exception)."""
        return json.dumps(_jsonable(asdict(self)), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Decision:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"decision record is not JSON: {err}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"decision record must be a JSON object, got {type(raw).__name__}")
        names = set(cls.__dataclass_fields__)
        missing = {"episode", "step", "family", "text", "fallback", "action"} - set(raw)
        if missing:
            raise ValueError(f"decision record is missing {sorted(missing)}")
        unknown = set(raw) - names
        if unknown:
            raise ValueError(f"decision record has unknown fields {sorted(unknown)}")
        decision = cls(**raw)
        decision.validate()
        return decision

    def validate(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"decision family {self.family!r} is not one of {FAMILIES}")
        if self.pointgoal is not None and (len(self.pointgoal) != 2 or not all(map(_finite, self.pointgoal))):
            raise ValueError(f"decision pointgoal must be [rho, phi], got {self.pointgoal!r}")
        if self.fallback:
            return
        if self.family == "pointnav":
            if not isinstance(self.action, int) or not 0 <= self.action <= 3:
                raise ValueError(f"pointnav decision action must be an int in 0..3, got {self.action!r}")
        else:
            if not isinstance(self.action, dict) or set(self.action) != set(VIMA_KEYS):
                raise ValueError(f"vima decision action must hold exactly {VIMA_KEYS}, got {self.action!r}")
            for key, want in zip(VIMA_KEYS, (2, 4, 2, 4), strict=True):
                value = self.action[key]
                if len(value) != want or not all(map(_finite, value)):
                    raise ValueError(f"vima decision {key} must be {want} finite numbers, got {value!r}")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays to Python, non-finite floats to None, keys to str."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy
        return _jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def action_to_json(action: Any) -> int | dict | None:
    """An env action (int or VIMA dict of arrays) as plain JSON values."""
    if action is None:
        return None
    if isinstance(action, dict):
        return {k: [float(v) for v in action[k]] for k in VIMA_KEYS}
    return int(action)
