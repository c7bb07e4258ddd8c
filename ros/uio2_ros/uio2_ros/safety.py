"""Every command passes through here on its way to the robot: clamp, rate-limit, never NaN.

Limits are the last line of defence, independent of what the policy or the motion profiles do:
whatever comes in, what goes out satisfies |v| <= max_linear, |w| <= max_angular and changes by at
most accel * dt per call. A safety stop (stale camera, slow policy, disabled, error) is the one
exception to the rate limit: it goes to zero at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_linear: float = 0.3  # m/s
    max_angular: float = 0.8  # rad/s
    max_linear_accel: float = 0.5  # m/s^2
    max_angular_accel: float = 1.5  # rad/s^2

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"limit {name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class VelocityCommand:
    linear: float = 0.0  # m/s along the robot's x (forward)
    angular: float = 0.0  # rad/s about z (counter-clockwise = left)
    reason: str = "idle"  # why this command: "motion", "disabled", "stale_image", ...

    @property
    def is_zero(self) -> bool:
        return self.linear == 0.0 and self.angular == 0.0


def _step_towards(current: float, target: float, max_delta: float) -> float:
    return current + max(-max_delta, min(max_delta, target - current))


class CommandLimiter:
    """Clamp and rate-limit a stream of velocity commands (one instance per output topic)."""

    def __init__(self, limits: Limits, max_dt: float = 0.1):
        """`max_dt` caps the time credited between two calls, so a long pause (a stop, a stalled
        timer) never licenses a jump: after it the command still ramps."""
        self.limits = limits
        self.max_dt = max_dt
        self.last = VelocityCommand()
        self.last_time: float | None = None
        self.rejected = 0  # non-finite inputs turned into stops

    def stop(self, now: float, reason: str) -> VelocityCommand:
        """Zero at once (safety stops are not rate limited)."""
        self.last, self.last_time = VelocityCommand(0.0, 0.0, reason), now
        return self.last

    def limit(self, cmd: VelocityCommand, now: float) -> VelocityCommand:
        """The command actually sent: finite, clamped, and rate limited against the previous one."""
        if not (math.isfinite(cmd.linear) and math.isfinite(cmd.angular)):
            self.rejected += 1
            return self.stop(now, "non_finite")
        lim = self.limits
        v = max(-lim.max_linear, min(lim.max_linear, cmd.linear))
        w = max(-lim.max_angular, min(lim.max_angular, cmd.angular))
        # The first command starts from standstill with no elapsed time: it ramps up from the next call.
        dt = 0.0 if self.last_time is None else min(self.max_dt, max(0.0, now - self.last_time))
        v = _step_towards(self.last.linear, v, lim.max_linear_accel * dt)
        w = _step_towards(self.last.angular, w, lim.max_angular_accel * dt)
        self.last, self.last_time = VelocityCommand(v, w, cmd.reason), now
        return self.last


def clamp_workspace(
    xy: tuple[float, float], low: tuple[float, float], high: tuple[float, float]
) -> tuple[float, float]:
    """A pick/place position clamped into the configured workspace rectangle (NaN -> ValueError)."""
    x, y = float(xy[0]), float(xy[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"position ({x}, {y}) is not finite")
    return min(max(x, low[0]), high[0]), min(max(y, low[1]), high[1])
