"""Fuzz the runner without DDS: random and extreme values in every input field, thousands of ticks.

What must hold whatever comes in: inputs are either taken or refused with a ValueError (what the node
logs and drops); `tick` never raises; every command is finite and within the speed limits; between
two commands the change is at most accel * dt of the stamps the limiter was given (safety stops go
to exactly zero at once); every decision record is strict JSON.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from uio2_ros.decision import Decision
from uio2_ros.runner import PolicyRunner, RunnerConfig
from uio2_ros.safety import Limits

EXTREMES = [0.0, -0.0, 1e-300, -1e-300, 5e-324, 1e308, -1e308, 1.7e308, math.inf, -math.inf, math.nan,
            999.999, 1000.0, 1000.001, -1000.0, 2.0**53, 3.0, -3.0]  # fmt: skip
WORKSPACE_M = 1000.0  # RunnerConfig.nav_workspace_m (the default)
FRAMES = ["odom", "odom", "odom", "", "map", "\x00", "o" * 1000]
STOPS = {"disabled", "no_image", "stale_image", "bad_stamp", "frozen_camera", "no_odometry", "stale_odometry",
         "policy_timeout", "episode_done", "no_goal", "goal_frame_mismatch", "tick_error", "non_finite",
         "bad_pointgoal", "idle"}  # fmt: skip


def pick(rng: np.random.Generator, options: list):
    """One of `options`, kept as it is (rng.choice would turn mixed lists into numpy arrays)."""
    return options[int(rng.integers(len(options)))]


class FuzzPolicy:
    """Answers with anything: valid actions, junk, huge and non-finite numbers, exceptions."""

    name = "fuzz"

    def __init__(self, rng: np.random.Generator, family: str):
        self.rng, self.family, self.last_info = rng, family, {}
        self.bad_observations = 0  # observations holding a non-finite or out-of-workspace number

    def reset(self, task):
        if self.rng.random() < 0.05:
            raise RuntimeError("reset failed")

    def _number(self):
        return pick(self.rng, EXTREMES) if self.rng.random() < 0.3 else float(self.rng.normal(0.5, 2.0))

    def act(self, obs, info=None):
        goal = obs.get("pointgoal_with_gps_compass")
        if goal is not None and not (np.isfinite(goal).all() and abs(goal[0]) <= 3 * WORKSPACE_M):
            self.bad_observations += 1
        if "audio" in obs and not np.isfinite(obs["audio"]).all():
            self.bad_observations += 1
        r = self.rng.random()
        self.last_info = {"decoded_text": pick(self.rng, ["turn left", "", "\udcff", "x" * 5000]),
                          "fallback": bool(self.rng.random() < 0.1)}  # fmt: skip
        if r < 0.05:
            raise ValueError("policy blew up")
        if self.family == "vima":
            if r < 0.15:
                return {"pose0_position": [1.0]}
            sizes = (("pose0_position", 2), ("pose0_rotation", 4), ("pose1_position", 2),
                     ("pose1_rotation", 4))  # fmt: skip
            return {k: [self._number() for _ in range(n)] for k, n in sizes}
        return pick(self.rng, [0, 1, 1, 1, 2, 3, -1, 4, 99, math.nan, math.inf, 1e308, "x", None, True,
                               np.array([2]), [[1]]])  # fmt: skip


def _random_text(rng: np.random.Generator) -> str:
    n = pick(rng, [0, 5, 50, 300, 2001, 100_000])
    return "".join(chr(int(c)) for c in rng.integers(32, 0x2FFF, size=min(n, 3000))) * max(1, n // 3000)


def _feed(runner: PolicyRunner, rng: np.random.Generator, t: float, clock_ns: int, state: dict) -> None:
    """Call one or more input methods with random arguments; only ValueError may come back."""
    view = runner.cfg.views[0]
    calls = []
    if rng.random() < 0.8:
        odd = tuple(int(v) for v in rng.integers(0, 5, size=rng.integers(1, 5)))
        shape = (8, 8, 3) if rng.random() < 0.9 else odd
        dtype = np.uint8 if rng.random() < 0.95 else np.float32
        rgb = rng.integers(0, 256, size=shape).astype(dtype)
        r = rng.random()
        if r < 0.6:
            stamp = clock_ns - int(rng.integers(0, 100_000_000))  # a good camera
        elif r < 0.7:
            stamp = state.get("last_stamp", 0)  # frozen
        elif r < 0.8:
            stamp = pick(rng, [0, -1, 2**63 - 1, clock_ns + 10**10, clock_ns - 10**10])
        else:
            stamp = pick(rng, [1.5, True, "7", None, np.int64(clock_ns)])
        state["last_stamp"] = stamp if isinstance(stamp, int) else state.get("last_stamp", 0)
        calls.append(lambda: runner.on_image(view, rgb, stamp, now=t, clock_ns=clock_ns))
    if rng.random() < 0.1:
        calls.append(lambda: runner.on_image("nope", np.zeros((8, 8, 3), np.uint8), clock_ns, now=t))
    if rng.random() < 0.8:
        x, y, yaw = (pick(rng, EXTREMES) if rng.random() < 0.1 else float(rng.normal(0, 3)) for _ in range(3))
        frame = FRAMES[int(rng.integers(len(FRAMES)))]
        calls.append(lambda: runner.on_odometry(x, y, yaw, frame, now=t))
    if rng.random() < 0.03:
        gx, gy = (pick(rng, EXTREMES) if rng.random() < 0.3 else float(rng.normal(0, 5)) for _ in range(2))
        frame = FRAMES[int(rng.integers(len(FRAMES)))]
        calls.append(lambda: runner.on_goal(gx, gy, frame))
    if rng.random() < 0.01:
        text = _random_text(rng)
        calls.append(lambda: runner.on_instruction(text))
    if rng.random() < 0.1:
        audio = pick(rng, [np.array(EXTREMES), rng.normal(0, 1, int(rng.integers(0, 40))), np.zeros(0)])
        calls.append(lambda: runner.on_audio(audio))
    if rng.random() < 0.02:
        enabled = bool(rng.random() < 0.8)
        calls.append(lambda: runner.set_enabled(enabled))
    for call in calls:
        try:
            call()
        except ValueError:
            state["refused"] += 1


@pytest.mark.parametrize(("family", "ticks"), [("pointnav", 4000), ("vima", 1000)])
def test_no_input_escapes_and_commands_hold_the_limits_exactly(family, ticks):
    rng = np.random.default_rng(25)
    limits = Limits(max_linear=0.3, max_angular=0.8, max_linear_accel=0.5, max_angular_accel=1.5)
    views = ("rgb",) if family == "pointnav" else ("front",)
    cfg = RunnerConfig(family=family, views=views, limits=limits, policy_period_s=0.05, max_episode_steps=40,
                       audio_samples=16 if family == "pointnav" else 0, max_policy_latency_s=0.3)  # fmt: skip
    policy = FuzzPolicy(rng, family)
    runner = PolicyRunner(policy, cfg, clock=lambda: 0.0)
    runner.set_enabled(True)
    runner.on_goal(2.0, 1.0, "odom")
    t, stamp, clock0 = 0.0, 0.0, 1_700_000_000 * 10**9
    state = {"refused": 0}
    previous = None
    reasons, decisions, pick_places = set(), 0, 0
    for _ in range(ticks):
        t += pick(rng, [0.05, 0.05, 0.05, 0.0, 0.001, 0.2, 1.0])  # timer jitter, stalls
        r = rng.random()  # the command stamp (ROS time) mostly follows, sometimes jumps either way
        stamp += 0.05 if r < 0.8 else pick(rng, [0.0, -0.5, -1e-9, 1e-9, 3.0, 0.049999])
        _feed(runner, rng, t, clock0 + int(t * 1e9), state)
        out = runner.tick(now=t, stamp=stamp)  # must not raise
        if runner.deciding:
            runner.wait_for_decision(10)
        assert out.stamp == stamp
        if out.decision is not None:
            decisions += 1
            record = json.loads(out.decision.to_json())  # strict JSON (no NaN/Infinity tokens)
            if not out.decision.fallback:
                Decision.from_json(json.dumps(record))
        if out.pick_place is not None:
            pick_places += 1
            for x, y, yaw in (out.pick_place.pick, out.pick_place.place):
                assert cfg.workspace_low[0] <= x <= cfg.workspace_high[0]
                assert cfg.workspace_low[1] <= y <= cfg.workspace_high[1] and math.isfinite(yaw)
        if family == "vima":
            assert out.velocity is None
            continue
        cmd = out.velocity
        reasons.add(cmd.reason)
        assert math.isfinite(cmd.linear) and math.isfinite(cmd.angular)
        assert abs(cmd.linear) <= limits.max_linear and abs(cmd.angular) <= limits.max_angular
        if cmd.reason in STOPS:
            assert cmd.linear == 0.0 and cmd.angular == 0.0, cmd
        elif previous is not None:
            dt = min(runner.limiter.max_dt, max(0.0, stamp - previous[0]))
            assert abs(cmd.linear - previous[1]) <= limits.max_linear_accel * dt + 1e-15, (cmd, dt)
            assert abs(cmd.angular - previous[2]) <= limits.max_angular_accel * dt + 1e-15, (cmd, dt)
        previous = (stamp, cmd.linear, cmd.angular)
    runner.close()
    assert policy.bad_observations == 0
    assert state["refused"] > ticks // 10 and decisions > 50  # the fuzz did reach both sides
    if family == "pointnav":
        assert "motion" in reasons and len(reasons & STOPS) >= 5, reasons
    else:
        assert pick_places > 10
