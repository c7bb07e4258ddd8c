"""Discrete navigation actions as velocity profiles that travel the right distance / angle.

Habitat's PointNav actions are "move forward 0.25 m" and "turn 10 degrees"; a wheeled robot needs
velocities. Each action becomes a trapezoidal profile (accelerate, cruise, decelerate) whose area is
exactly the step, and whose speed and acceleration stay inside the configured limits, so the
command limiter never has to cut it short.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from uio2_ros.safety import Limits

STOP, MOVE_FORWARD, TURN_LEFT, TURN_RIGHT = 0, 1, 2, 3


@dataclass(frozen=True)
class Trapezoid:
    """Speed over time for travelling `distance` (>= 0) with peak speed <= vmax and |accel| <= amax."""

    distance: float
    vmax: float
    amax: float

    def __post_init__(self) -> None:
        for name in ("distance", "vmax", "amax"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (name != "distance" and value == 0):
                raise ValueError(f"profile {name} must be finite and positive, got {value}")

    @property
    def peak(self) -> float:
        return min(self.vmax, math.sqrt(self.distance * self.amax))

    @property
    def ramp_time(self) -> float:
        return self.peak / self.amax

    @property
    def duration(self) -> float:
        if self.distance == 0:
            return 0.0
        cruise = (self.distance - self.peak * self.ramp_time) / self.peak
        return 2 * self.ramp_time + cruise

    def speed(self, t: float) -> float:
        """Speed at time t since the start (0 outside the profile)."""
        total, ramp = self.duration, self.ramp_time
        if t <= 0 or t >= total:
            return 0.0
        return self.amax * min(t, ramp, total - t)


@dataclass(frozen=True)
class MotionProfile:
    """One discrete action as (linear, angular) velocity over time; `sign` gives the direction."""

    linear: Trapezoid | None = None
    angular: Trapezoid | None = None
    sign: float = 1.0

    @property
    def duration(self) -> float:
        return max(p.duration for p in (self.linear, self.angular) if p is not None) if self else 0.0

    def __bool__(self) -> bool:
        return self.linear is not None or self.angular is not None

    def velocity(self, t: float) -> tuple[float, float]:
        v = self.linear.speed(t) * self.sign if self.linear else 0.0
        w = self.angular.speed(t) * self.sign if self.angular else 0.0
        return v, w


@dataclass(frozen=True)
class DiscreteMotion:
    """Habitat's action set with our PointNav defaults (0.25 m, 10 degrees), capped by the limits."""

    forward_step_m: float = 0.25
    turn_angle_deg: float = 10.0
    linear_speed: float = 0.2
    angular_speed: float = 0.5
    limits: Limits = field(default_factory=Limits)  # the command limiter's: profiles never exceed them

    def profile(self, action: int) -> MotionProfile:
        """The velocity profile of one discrete action (STOP: none)."""
        if action == STOP:
            return MotionProfile()
        if action == MOVE_FORWARD:
            speed = min(self.linear_speed, self.limits.max_linear)
            return MotionProfile(linear=Trapezoid(self.forward_step_m, speed, self.limits.max_linear_accel))
        if action in (TURN_LEFT, TURN_RIGHT):
            speed = min(self.angular_speed, self.limits.max_angular)
            turn = Trapezoid(math.radians(self.turn_angle_deg), speed, self.limits.max_angular_accel)
            return MotionProfile(angular=turn, sign=1.0 if action == TURN_LEFT else -1.0)
        raise ValueError(f"discrete action {action!r} is not one of STOP/MOVE_FORWARD/TURN_LEFT/TURN_RIGHT")
