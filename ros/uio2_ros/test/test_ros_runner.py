"""The policy runner on simulated time: watchdog, fallbacks, episodes, limits under fuzzed outputs."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from uio2_ros.decision import Decision
from uio2_ros.motion import MOVE_FORWARD, STOP, TURN_LEFT
from uio2_ros.runner import PolicyRunner, RunnerConfig
from uio2_ros.safety import Limits

FRAME = np.zeros((8, 8, 3), np.uint8)


class ScriptedPolicy:
    """A Policy-protocol object that answers from a script (an action, or an exception to raise)."""

    name = "scripted"

    def __init__(self, script, fallback_at=()):
        self.script, self.fallback_at = list(script), set(fallback_at)
        self.calls, self.resets, self.last_info = 0, [], {}
        self.gate: threading.Event | None = None

    def reset(self, task):
        self.resets.append(task)

    def act(self, obs, info=None):
        if self.gate is not None:
            self.gate.wait(10)
        action = self.script[min(self.calls, len(self.script) - 1)]
        self.last_info = {"decoded_text": f"action {action!r}", "fallback": self.calls in self.fallback_at}
        self.calls += 1
        self.obs = obs
        if isinstance(action, Exception):
            raise action
        return action


class Sim:
    """Drives a runner on simulated time: a camera at 30 Hz, ticks at 20 Hz."""

    def __init__(self, policy, **cfg):
        self.t = 0.0
        self.runner = PolicyRunner(policy, RunnerConfig(**cfg), clock=lambda: self.t)
        self.camera = True
        self.odom: tuple[float, float, float, str] | None = None  # fed every tick when set
        self.outputs = []

    def run(self, seconds: float, wait: bool = True):
        end, start = self.t + seconds, len(self.outputs)
        while self.t < end - 1e-9:
            self.t += 0.05
            if self.camera:
                self.runner.on_image(self.runner.cfg.views[0], FRAME, int(self.t * 1e9), now=self.t)
            if self.odom is not None:
                self.runner.on_odometry(*self.odom, now=self.t)
            out = self.runner.tick()
            self.outputs.append(out)
            if wait and self.runner.deciding:
                self.runner.wait_for_decision(120)  # the tiny UIO2 compiles on its first decision
        return self.outputs[start:]

    def navigating(self):
        self.odom = (0.0, 0.0, 0.0, "odom")
        self.runner.on_odometry(*self.odom)
        self.runner.on_goal(2.0, 0.0, "odom")
        self.runner.set_enabled(True)
        return self


def _distance(outputs, dt=0.05):
    return sum(o.velocity.linear for o in outputs) * dt, sum(o.velocity.angular for o in outputs) * dt


def test_disabled_by_default_and_no_image_means_zero():
    sim = Sim(ScriptedPolicy([MOVE_FORWARD]))
    sim.camera = False
    outs = sim.run(0.5)
    assert all(o.velocity.is_zero and o.velocity.reason == "disabled" for o in outs)
    sim.runner.set_enabled(True)
    assert sim.run(0.2)[-1].velocity.reason == "no_image"


def test_forward_decision_moves_one_step_then_asks_again():
    policy = ScriptedPolicy([MOVE_FORWARD, STOP])
    sim = Sim(policy).navigating()
    outs = sim.run(4.0)
    decisions = [o.decision for o in outs if o.decision]
    assert [d.action for d in decisions] == [MOVE_FORWARD, STOP]
    assert decisions[0].pointgoal == pytest.approx([2.0, 0.0])
    assert decisions[0].image_stamps_ns["rgb"] > 0 and not decisions[0].fallback
    Decision.from_json(decisions[0].to_json())  # a valid record
    linear, angular = _distance(outs)
    assert linear == pytest.approx(0.25, abs=0.01) and angular == pytest.approx(0.0)
    assert outs[-1].velocity.reason == "episode_done" and outs[-1].velocity.is_zero
    assert len(policy.resets) == 1 and policy.resets[0].prompt == ""


def test_stale_camera_stops_within_the_limit():
    sim = Sim(ScriptedPolicy([MOVE_FORWARD] * 100), max_image_age_s=0.3).navigating()
    sim.run(1.0)
    assert any(not o.velocity.is_zero for o in sim.outputs[-5:])
    sim.camera = False
    last_frame = sim.t
    outs = sim.run(1.0)
    first_stop = next(i for i, o in enumerate(outs) if o.velocity.reason == "stale_image")
    assert (first_stop + 1) * 0.05 <= 0.3 + 0.05 + 1e-9  # within one tick of the limit
    assert all(o.velocity.is_zero for o in outs[first_stop:])
    assert sim.t - last_frame > 0.3


def test_slow_policy_trips_the_watchdog_and_its_late_result_is_dropped():
    policy = ScriptedPolicy([TURN_LEFT])
    policy.gate = threading.Event()
    sim = Sim(policy, max_policy_latency_s=0.5).navigating()
    outs = sim.run(1.0, wait=False)
    reasons = [o.velocity.reason for o in outs]
    assert "policy_timeout" in reasons and reasons[-1] == "policy_timeout"
    assert any("slower than" in e for o in outs for e in o.events)
    policy.gate.set()
    sim.runner.wait_for_decision(10)
    outs = sim.run(0.05)  # one tick: the late result is harvested and dropped, a fresh decision is asked
    assert not any(o.decision for o in outs)
    assert sim.runner.stats["discarded_late"] == 1
    outs = sim.run(0.05)
    assert [o.decision.action for o in outs if o.decision] == [TURN_LEFT] and policy.calls == 2


def test_undecodable_output_and_policy_errors_hold_still():
    script = [TURN_LEFT, RuntimeError("boom"), "garbage", math.nan, 9, TURN_LEFT]
    policy = ScriptedPolicy(script, fallback_at={0})
    sim = Sim(policy, policy_period_s=0.1).navigating()
    outs = sim.run(2.0)
    decisions = [o.decision for o in outs if o.decision]
    assert [d.fallback for d in decisions[:4]] == [True, True, True, True]
    assert decisions[4].fallback is False and decisions[4].action == TURN_LEFT
    assert sim.runner.stats["policy_error"] == 1 and sim.runner.stats["fallback"] == 4
    moving = [i for i, o in enumerate(outs) if not o.velocity.is_zero]
    first_ok = next(i for i, o in enumerate(outs) if o.decision is decisions[4])
    assert moving and moving[0] > first_ok  # nothing moved before the first good decision
    assert any("policy error: RuntimeError: boom" in e for o in outs for e in o.events)
    assert len(policy.resets) == 2  # the episode starts afresh after an error


def test_commands_stay_within_limits_under_fuzzed_policy_outputs():
    rng = np.random.default_rng(0)
    script = [rng.choice([0, 1, 2, 3, -1, 4, "x", None, math.inf]) for _ in range(300)]
    limits = Limits(max_linear=0.2, max_angular=0.5, max_linear_accel=0.4, max_angular_accel=1.0)
    sim = Sim(ScriptedPolicy(script), policy_period_s=0.05, limits=limits).navigating()
    for k in range(12):
        sim.runner.on_goal(3.0, float(k), "odom")  # keep episodes going past STOPs
        sim.run(2.5)
    vel = np.array([(o.velocity.linear, o.velocity.angular) for o in sim.outputs])
    assert np.isfinite(vel).all()
    assert np.abs(vel[:, 0]).max() <= 0.2 and np.abs(vel[:, 1]).max() <= 0.5
    assert np.abs(vel[:, 0]).max() > 0.1  # it did move
    steps = np.abs(np.diff(vel, axis=0))
    moving_up = np.abs(vel[1:]) > np.abs(vel[:-1]) + 1e-12  # stops may jump to zero; speeding up is ramped
    assert (steps[:, 0][moving_up[:, 0]] <= 0.4 * 0.05 + 1e-9).all()
    assert (steps[:, 1][moving_up[:, 1]] <= 1.0 * 0.05 + 1e-9).all()


def test_new_goal_starts_a_new_episode_and_missing_odometry_is_named():
    policy = ScriptedPolicy([STOP])
    sim = Sim(policy)
    sim.runner.on_goal(1.0, 0.0, "odom")
    sim.runner.set_enabled(True)
    assert sim.run(0.2)[-1].velocity.reason == "no_odometry"
    sim.odom = (0.0, 0.0, 0.0, "map")
    assert sim.run(0.2)[-1].velocity.reason == "goal_frame_mismatch"
    sim.odom = (0.0, 0.0, 0.0, "odom")
    sim.run(0.5)
    episode = sim.runner.episode
    assert sim.runner.done
    sim.runner.on_goal(2.0, 0.0, "odom")
    assert not sim.runner.done and sim.runner.episode == episode + 1
    outs = sim.run(0.5)
    assert [o.decision.episode for o in outs if o.decision] == [episode + 1]
    with pytest.raises(ValueError, match="not finite"):
        sim.runner.on_goal(math.nan, 0.0, "odom")


def test_vima_pick_and_place_are_clamped_to_the_workspace():
    bad = {"pose0_position": [5.0, -5.0], "pose0_rotation": [0, 0, 0, 1],
           "pose1_position": [0.5, 0.1], "pose1_rotation": [0, 0, math.sin(0.5), math.cos(0.5)]}  # fmt: skip
    nan = {**bad, "pose1_position": [math.nan, 0.0]}
    policy = ScriptedPolicy([bad, nan])
    sim = Sim(policy, family="vima", views=("front",), policy_period_s=0.5)
    sim.runner.on_instruction("put the red block in the green bowl")
    sim.runner.set_enabled(True)
    outs = sim.run(1.0)
    commands = [o.pick_place for o in outs if o.pick_place]
    decisions = [o.decision for o in outs if o.decision]
    assert len(commands) == 1 and all(o.velocity is None for o in outs)
    assert commands[0].pick[:2] == (0.75, -0.5)
    assert commands[0].place == pytest.approx((0.5, 0.1, 1.0))
    assert [d.fallback for d in decisions] == [False, True]
    assert policy.obs["rgb"]["front"].shape == (3, 8, 8)
    assert policy.resets[0].prompt == "put the red block in the green bowl"


def test_config_errors_are_named():
    with pytest.raises(ValueError, match="family"):
        RunnerConfig(family="drone")
    with pytest.raises(ValueError, match="one camera view named 'rgb'"):
        RunnerConfig(views=("front",))
    with pytest.raises(ValueError, match="max_image_age_s"):
        RunnerConfig(max_image_age_s=0)


def test_runner_with_a_tiny_uio2_policy_decides_and_moves():
    """End to end through the real model: observation -> UIO2 -> constrained decode -> motion."""
    from policies.registry import make_policy

    policy = make_policy("uio2", model="tiny", seed=0)
    sim = Sim(policy, max_policy_latency_s=120.0).navigating()
    outs = sim.run(0.2)
    decisions = [o.decision for o in outs if o.decision]
    assert len(decisions) == 1
    d = decisions[0]
    assert d.fallback is False and d.action in (0, 1, 2, 3)
    assert d.text in ("stop", "move forward", "turn left", "turn right")


def test_numbers_outside_the_workspace_and_unnamed_frames_are_rejected_by_name():
    sim = Sim(ScriptedPolicy([MOVE_FORWARD] * 50), nav_workspace_m=100.0).navigating()
    for bad, match in [((1.7e308, 1.7e308, "odom"), "outside the workspace"),
                       ((100.5, 0.0, "odom"), "outside the workspace"),
                       ((math.inf, 0.0, "odom"), "not finite"),
                       ((1.0, 0.0, ""), "empty frame_id")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            sim.runner.on_goal(*bad)
        with pytest.raises(ValueError, match=match):
            sim.runner.on_odometry(bad[0], bad[1], 0.0, bad[2])
    with pytest.raises(ValueError, match="yaw"):
        sim.runner.on_odometry(0.0, 0.0, math.nan, "odom")
    episode = sim.runner.episode
    outs = sim.run(1.0)
    assert sim.runner.episode == episode  # rejected goals start no episode
    assert next(o.decision.pointgoal for o in outs if o.decision) == pytest.approx([2.0, 0.0])
    assert max(o.velocity.linear for o in outs) > 0.05  # the last good goal still drives the robot
    sim.runner.on_goal(-100.0, 100.0, "odom")  # the bound itself is inside
    assert sim.runner.episode == episode + 1


def test_stale_odometry_stops_a_goal_driven_episode_and_fresh_odometry_resumes_it():
    sim = Sim(ScriptedPolicy([MOVE_FORWARD] * 100), max_odom_age_s=0.3, policy_period_s=0.05).navigating()
    sim.run(1.0)
    assert not sim.outputs[-1].velocity.is_zero
    sim.odom, last_odom = None, sim.t
    outs = sim.run(1.0)
    first_stop = next(i for i, o in enumerate(outs) if o.velocity.reason == "stale_odometry")
    assert sim.t - 1.0 + first_stop * 0.05 - last_odom <= 0.3 + 0.05 + 1e-9  # within a tick of the limit
    assert all(o.velocity.is_zero for o in outs[first_stop:])
    sim.odom = (0.0, 0.0, 0.0, "odom")
    assert max(o.velocity.linear for o in sim.run(1.0)) > 0.05


def _feed(runner, t, stamp_ns, clock_ns):
    try:
        runner.on_image("rgb", FRAME, stamp_ns, now=t, clock_ns=clock_ns)
    except ValueError as err:
        return str(err)
    return ""


@pytest.mark.parametrize(
    ("kind", "reason", "message"),
    [("1970", "bad_stamp", "before the node clock"),
     ("future", "bad_stamp", "after the node clock"),
     ("frozen", "frozen_camera", "")],  # one frame, sent again and again
)  # fmt: skip
def test_bad_or_frozen_frame_stamps_stop_the_robot(kind, reason, message):
    sim = Sim(ScriptedPolicy([TURN_LEFT] * 100), max_stamp_age_s=0.25, policy_period_s=0.05).navigating()
    sim.camera = False
    clock0 = 10**9  # the node clock (ROS time) at t = 0

    def run(seconds, stamp_of):
        outs, errors = [], []
        for k in range(round(seconds / 0.05)):
            sim.t += 0.05
            clock = clock0 + int(sim.t * 1e9)
            errors.append(_feed(sim.runner, sim.t, stamp_of(clock / 1e9, k), clock))
            sim.runner.on_odometry(0.0, 0.0, 0.0, "odom", now=sim.t)
            outs.append(sim.runner.tick())
            if sim.runner.deciding:
                sim.runner.wait_for_decision(10)
        return outs, errors

    outs, errors = run(1.0, lambda s, k: int(s * 1e9) - 50_000_000)  # 50 ms old: fine
    assert not any(errors) and not outs[-1].velocity.is_zero
    first: list[int] = []
    stamp = {"1970": lambda s, k: 0,
             "future": lambda s, k: int((s + 30.0) * 1e9),
             "frozen": lambda s, k: first.append(int(s * 1e9)) or first[0]}[kind]  # fmt: skip
    outs, errors = run(1.0, stamp)
    assert all(message in e for e in errors[1:]) and all(errors[1:]) == bool(message)
    first_stop = next(i for i, o in enumerate(outs) if o.velocity.is_zero)
    assert outs[first_stop].velocity.reason == reason
    assert (first_stop + 1) * 0.05 <= sim.runner.cfg.max_image_age_s + 0.05 + 1e-9
    assert all(o.velocity.is_zero for o in outs[first_stop:])
    outs, errors = run(1.0, lambda s, k: int(s * 1e9))  # a healthy camera again
    assert not any(errors) and max(o.velocity.angular for o in outs) > 0.05


def test_instructions_are_capped_in_characters_and_in_the_policys_tokens():
    from uio2_core.vocab import tiny_vocabulary

    policy = ScriptedPolicy([STOP])
    policy.vocab = tiny_vocabulary()  # the runner counts tokens with the policy's own tokenizer
    sim = Sim(policy, family="vima", views=("front",), max_instruction_chars=100, max_instruction_tokens=12)
    sim.runner.on_instruction("put the red block in the bowl")
    episode = sim.runner.episode
    with pytest.raises(ValueError, match="1000000 characters"):
        sim.runner.on_instruction("x" * 1_000_000)
    words = "pick the zigzag xylophone quickly near the wobbly jukebox"  # 9 words, more than 12 tokens
    assert len(policy.vocab.encode(words)) > 12
    with pytest.raises(ValueError, match="tokens is longer than max_instruction_tokens 12"):
        sim.runner.on_instruction(words)
    assert sim.runner.episode == episode  # the old instruction stays
    sim.runner.set_enabled(True)
    sim.run(0.2)
    assert policy.resets[0].prompt == "put the red block in the bowl"
    wordy = Sim(ScriptedPolicy([STOP]), max_instruction_tokens=3)  # no tokenizer: whitespace words
    wordy.runner.on_instruction("go to the")
    with pytest.raises(ValueError, match="4 tokens"):
        wordy.runner.on_instruction("go to the door")


def test_an_exception_inside_the_tick_publishes_zero_and_the_loop_goes_on():
    sim = Sim(ScriptedPolicy([MOVE_FORWARD] * 100), policy_period_s=0.05).navigating()
    sim.run(1.0)
    assert not sim.outputs[-1].velocity.is_zero
    real = sim.runner._stale_image

    def broken(now, frames):
        raise ZeroDivisionError("a bug")

    sim.runner._stale_image = broken
    outs = sim.run(0.3)
    assert all(o.velocity.is_zero and o.velocity.reason == "tick_error" for o in outs)
    assert sim.runner.stats["tick_error"] == len(outs)
    assert any("tick error (robot stopped): ZeroDivisionError: a bug" in e for e in outs[0].events)
    sim.runner._stale_image = real
    assert max(o.velocity.linear for o in sim.run(1.0)) > 0.05


def test_decision_records_are_strict_json_whatever_they_hold():
    d = Decision(episode=0, step=0, family="pointnav", text="x", fallback=True, action=None,
                 pointgoal=[math.inf, np.float32(math.nan)], decision_ms=math.nan,
                 image_stamps_ns={"rgb": np.int64(5)})  # fmt: skip
    text = d.to_json()
    assert "NaN" not in text and "Infinity" not in text
    raw = __import__("json").loads(text)
    assert raw["pointgoal"] == [None, None] and raw["decision_ms"] is None
    assert raw["image_stamps_ns"]["rgb"] == 5
    with pytest.raises(ValueError, match="pointgoal"):
        Decision.from_json(text)
