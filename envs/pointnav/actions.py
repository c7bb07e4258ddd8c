"""PointNav's discrete actions, in habitat-lab's task order, and their validation."""

from __future__ import annotations

from typing import Any

import numpy as np

STOP, MOVE_FORWARD, TURN_LEFT, TURN_RIGHT = 0, 1, 2, 3
ACTION_NAMES = ("STOP", "MOVE_FORWARD", "TURN_LEFT", "TURN_RIGHT")


def parse_action(action: Any, n: int = 4) -> int:
    """The action as an int in [0, n), or a ValueError that says what was given and what is allowed."""
    a = np.asarray(action)
    if a.shape != () or not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
        raise ValueError(
            f"invalid action {action!r}: expected one int in 0..{n - 1} "
            f"({', '.join(f'{i} {name}' for i, name in enumerate(ACTION_NAMES[:n]))})"
        )
    value = int(a)
    if not 0 <= value < n:
        raise ValueError(f"invalid action {value}: expected 0..{n - 1} ({', '.join(ACTION_NAMES[:n])})")
    return value
