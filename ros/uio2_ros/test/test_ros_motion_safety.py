"""Velocity profiles travel the right distance inside the limits; the limiter holds under fuzzing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from envs.pointnav.geometry import pointgoal_polar

from uio2_ros.goals import pointgoal, quaternion_from_yaw, yaw_from_quaternion
from uio2_ros.motion import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT, DiscreteMotion, Trapezoid
from uio2_ros.safety import CommandLimiter, Limits, VelocityCommand, clamp_workspace


def _integrate(profile, dt: float = 1e-4):
    ts = np.arange(0.0, profile.duration + dt, dt)
    vel = np.array([profile.velocity(t) for t in ts])
    return vel.sum(axis=0) * dt, vel, dt


@pytest.mark.parametrize(
    ("action", "linear", "angular"),
    [(MOVE_FORWARD, 0.25, 0.0), (TURN_LEFT, 0.0, math.radians(10)), (TURN_RIGHT, 0.0, -math.radians(10))],
)
def test_profiles_travel_exactly_one_step_within_limits(action, linear, angular):
    motion = DiscreteMotion()
    (dist, turn), vel, dt = _integrate(motion.profile(action))
    assert dist == pytest.approx(linear, abs=2e-4)
    assert turn == pytest.approx(angular, abs=2e-4)
    assert np.abs(vel[:, 0]).max() <= min(motion.linear_speed, motion.limits.max_linear) + 1e-9
    assert np.abs(vel[:, 1]).max() <= min(motion.angular_speed, motion.limits.max_angular) + 1e-9
    accel = np.abs(np.diff(vel, axis=0)) / dt
    assert accel[:, 0].max() <= motion.limits.max_linear_accel + 1e-6
    assert accel[:, 1].max() <= motion.limits.max_angular_accel + 1e-6


def test_short_steps_use_a_triangular_profile_and_speeds_are_capped_by_limits():
    tri = Trapezoid(0.01, 1.0, 0.5)
    assert tri.peak == pytest.approx(math.sqrt(0.01 * 0.5))
    assert tri.duration == pytest.approx(2 * tri.peak / 0.5)
    capped = DiscreteMotion(linear_speed=5.0, limits=Limits(max_linear=0.1)).profile(MOVE_FORWARD)
    assert capped.linear.vmax == 0.1
    assert not DiscreteMotion().profile(STOP)
    with pytest.raises(ValueError, match="discrete action 7"):
        DiscreteMotion().profile(7)
    with pytest.raises(ValueError, match="vmax"):
        Trapezoid(1.0, float("nan"), 1.0)


def test_limiter_never_exceeds_limits_under_fuzzed_commands():
    limits = Limits(max_linear=0.3, max_angular=0.8, max_linear_accel=0.5, max_angular_accel=1.5)
    limiter = CommandLimiter(limits, max_dt=0.1)
    rng = np.random.default_rng(0)
    specials = [math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0]
    now, prev = 0.0, VelocityCommand()
    for _ in range(20_000):
        dt = float(rng.choice([0.0, 0.01, 0.05, 0.2, 5.0]))
        now += dt
        v = float(rng.choice(specials)) if rng.random() < 0.1 else float(rng.normal(0, 3))
        w = float(rng.choice(specials)) if rng.random() < 0.1 else float(rng.normal(0, 3))
        out = limiter.stop(now, "test") if rng.random() < 0.02 else limiter.limit(VelocityCommand(v, w), now)
        assert math.isfinite(out.linear) and math.isfinite(out.angular)
        assert abs(out.linear) <= limits.max_linear and abs(out.angular) <= limits.max_angular
        if out.reason not in ("test", "non_finite"):
            credit = min(dt, 0.1)
            assert abs(out.linear - prev.linear) <= limits.max_linear_accel * credit + 1e-12
            assert abs(out.angular - prev.angular) <= limits.max_angular_accel * credit + 1e-12
        if not (math.isfinite(v) and math.isfinite(w)) and out.reason != "test":
            assert out.is_zero and out.reason == "non_finite"
        prev = out
    assert limiter.rejected > 0


def test_safety_stop_is_immediate_and_ramp_resumes_gradually():
    limiter = CommandLimiter(Limits(max_linear=1.0, max_linear_accel=1.0), max_dt=0.1)
    t = 0.0
    for _ in range(30):
        t += 0.05
        out = limiter.limit(VelocityCommand(1.0, 0.0), t)
    assert out.linear == pytest.approx(1.0)
    assert limiter.stop(t + 0.01, "stale_image").is_zero
    after_pause = limiter.limit(VelocityCommand(1.0, 0.0), t + 60.0)  # a long pause earns no jump
    assert after_pause.linear == pytest.approx(0.1)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_limits_must_be_positive_and_finite(bad):
    with pytest.raises(ValueError, match="max_linear"):
        Limits(max_linear=bad)


def test_workspace_clamp():
    assert clamp_workspace((2.0, -3.0), (0.25, -0.5), (0.75, 0.5)) == (0.75, -0.5)
    with pytest.raises(ValueError, match="not finite"):
        clamp_workspace((math.nan, 0.0), (0.0, 0.0), (1.0, 1.0))


def test_pointgoal_matches_habitat_convention():
    """ROS (x forward, y left) mapped into Habitat's frame (x right, z back, y up) gives the env's value."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        rx, ry, yaw, gx, gy = rng.uniform(-5, 5, 5)
        ours = pointgoal((rx, ry, yaw), (gx, gy))
        habitat = pointgoal_polar(np.array([-ry, -rx]), yaw, np.array([-gy, -gx]))
        np.testing.assert_allclose(ours, habitat, atol=1e-5)
    rho, phi = pointgoal((0.0, 0.0, 0.0), (1.0, 1.0))
    assert rho == pytest.approx(math.sqrt(2)) and phi == pytest.approx(math.pi / 4)  # ahead-left: positive


def test_quaternion_yaw_round_trip_and_bad_quaternion():
    for yaw in np.linspace(-3.1, 3.1, 13):
        assert yaw_from_quaternion(*quaternion_from_yaw(yaw)) == pytest.approx(yaw)
    with pytest.raises(ValueError, match="not a rotation"):
        yaw_from_quaternion(0.0, 0.0, 0.0, 0.0)
