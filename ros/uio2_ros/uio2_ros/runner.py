"""The policy runner: latest sensor data + instruction -> observation -> policy -> safe commands.

ROS-free, clock-driven and single-owner: the node feeds sensor callbacks in and calls `tick(now)` at
the control rate; `tick` never blocks. The policy runs on one worker thread, so a slow model can
never hold the control loop: while a decision is pending the robot is held still, and a decision
older than `max_policy_latency_s` trips the watchdog (zero command, result discarded).

Navigation (family "pointnav"): each decoded action becomes a velocity profile (motion.py) that is
played out tick by tick through the command limiter; the next decision is asked for when it ends.
Manipulation (family "vima"): each decoded action becomes a pick and a place pose (workspace frame,
clamped to the workspace) for the robot's own motion stack, at most once per policy period.

Safety rules (each with a `reason` on the command and a counter in `stats`):
- disabled (the default at start)            -> zero
- no camera frame yet / frame older than limit -> zero, motion cancelled ("no_image", "stale_image";
  "frozen_camera" when frames keep coming with an unchanged header stamp, "bad_stamp" when their
  stamps are too far from the node clock)
- navigating to a goal with no odometry, or odometry older than its limit -> zero ("stale_odometry")
- decision slower than the limit              -> zero, late result discarded
- output the codec could not parse (fallback), policy exception, non-finite action -> nothing moves
- anything that raises inside `tick`          -> zero ("tick_error"), counted, the loop goes on

Inputs are checked where they come in (`on_*` raise `ValueError` naming the problem; the node logs and
drops the message): every number finite, navigation coordinates within `nav_workspace_m`, goal and
odometry frames named, instructions within `max_instruction_chars` / `max_instruction_tokens`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uio2_ros.decision import Decision, action_to_json
from uio2_ros.goals import pointgoal, yaw_from_quaternion
from uio2_ros.images import resize
from uio2_ros.motion import STOP, DiscreteMotion, MotionProfile
from uio2_ros.safety import CommandLimiter, Limits, VelocityCommand, clamp_workspace

VIMA_WORKSPACE_LOW = (0.25, -0.5)  # the policy's pick/place bounds (VIMA-Bench), metres
VIMA_WORKSPACE_HIGH = (0.75, 0.5)


@dataclass
class RunnerConfig:
    family: str = "pointnav"  # "pointnav" (discrete navigation) or "vima" (pick and place)
    views: tuple[str, ...] = ("rgb",)  # pointnav: ("rgb",); vima: e.g. ("front",) or ("front", "top")
    image_topics: dict[str, str] = field(default_factory=dict)  # view -> topic, for the decision record
    image_height: int = 0  # resize camera frames to this (0: keep the first frame's size)
    image_width: int = 0
    policy_period_s: float = 0.5  # at most one decision per period
    max_image_age_s: float = 0.5
    max_policy_latency_s: float = 2.0
    max_episode_steps: int = 500  # Habitat's PointNav budget
    audio_samples: int = 0  # >0: feed the last N mono samples as obs["audio"]
    motion: DiscreteMotion = field(default_factory=DiscreteMotion)
    limits: Limits = field(default_factory=Limits)
    control_period_s: float = 0.05
    workspace_low: tuple[float, float] = VIMA_WORKSPACE_LOW
    workspace_high: tuple[float, float] = VIMA_WORKSPACE_HIGH
    max_odom_age_s: float = 0.5  # navigating with older odometry -> zero
    max_stamp_age_s: float = 0.5  # |node clock - frame stamp| beyond this -> frame rejected (0: no check)
    nav_workspace_m: float = 1000.0  # goal / odometry x, y beyond +-this -> rejected
    max_instruction_chars: int = 2000
    max_instruction_tokens: int = 256  # the policy's tokenizer when it has one, else whitespace words

    def __post_init__(self) -> None:
        if self.family not in ("pointnav", "vima"):
            raise ValueError(f"family must be 'pointnav' or 'vima', got {self.family!r}")
        if not self.views:
            raise ValueError("at least one camera view is needed")
        if self.family == "pointnav" and tuple(self.views) != ("rgb",):
            raise ValueError(f"pointnav uses one camera view named 'rgb', got {self.views}")
        positive = ("policy_period_s", "max_image_age_s", "max_policy_latency_s", "control_period_s",
                    "max_odom_age_s", "nav_workspace_m", "max_instruction_chars", "max_instruction_tokens")
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive, got {value}")
        if not (math.isfinite(self.max_stamp_age_s) and self.max_stamp_age_s >= 0):
            raise ValueError(f"max_stamp_age_s must be >= 0 (0: no check), got {self.max_stamp_age_s}")
        if (self.image_height > 0) != (self.image_width > 0):
            raise ValueError("set both image_height and image_width, or neither")


@dataclass
class PickPlace:
    """A manipulation command: (x, y, yaw) of the pick and of the place, in the workspace frame."""

    pick: tuple[float, float, float]
    place: tuple[float, float, float]


@dataclass
class TickOutput:
    stamp: float = 0.0  # the time the command limiter used: stamp the command with exactly this
    velocity: VelocityCommand | None = None  # navigation: publish every tick
    pick_place: PickPlace | None = None  # manipulation: publish once
    decision: Decision | None = None  # publish (and record) once per decision
    events: list[str] = field(default_factory=list)  # things worth a log line


@dataclass
class _Frame:
    rgb: np.ndarray
    stamp_ns: int
    received: float


@dataclass
class _Pending:
    future: Future
    episode: int
    submitted: float
    stamps: dict[str, int]
    pointgoal: list[float] | None
    late: bool = False


def spaces_for(cfg: RunnerConfig, shape: tuple[int, int]):
    """Gymnasium spaces of the observations this runner builds (what the policy's reset sees)."""
    from gymnasium import spaces

    h, w = shape
    if cfg.family == "pointnav":
        obs = {"rgb": spaces.Box(0, 255, (h, w, 3), np.uint8),
               "pointgoal_with_gps_compass": spaces.Box(-np.inf, np.inf, (2,), np.float32)}  # fmt: skip
        if cfg.audio_samples:
            obs["audio"] = spaces.Box(-1.0, 1.0, (1, cfg.audio_samples), np.float32)
        return spaces.Dict(obs), spaces.Discrete(4)
    views = spaces.Dict({v: spaces.Box(0, 255, (3, h, w), np.uint8) for v in cfg.views})
    lo, hi = np.array(cfg.workspace_low, np.float32), np.array(cfg.workspace_high, np.float32)
    pose = {"position": spaces.Box(lo, hi, (2,), np.float32),
            "rotation": spaces.Box(-1.0, 1.0, (4,), np.float32)}  # fmt: skip
    action = spaces.Dict({f"pose{i}_{k}": s for i in (0, 1) for k, s in pose.items()})
    return spaces.Dict({"rgb": views, "ee": spaces.Discrete(2)}), action


class PolicyRunner:
    """Turns sensor data into commands through any object with the Policy protocol (reset / act)."""

    def __init__(self, policy: Any, config: RunnerConfig, clock: Callable[[], float] = time.monotonic):
        self.policy, self.cfg, self.clock = policy, config, clock
        self.limiter = CommandLimiter(config.limits, max_dt=2 * config.control_period_s)
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()  # sensor callbacks may run on other executor threads
        self._frames: dict[str, _Frame] = {}
        self._frame_problem: dict[str, str] = {}  # view -> why its newest frames were not taken
        self._odom: tuple[float, float, float] | None = None
        self._odom_frame = ""
        self._odom_received = -math.inf
        self._goal: tuple[float, float] | None = None
        self._goal_frame = ""
        self._instruction = ""
        self._audio = np.zeros(0, np.float32)
        self.enabled = False
        self.episode = -1
        self.step = 0
        self.done = False
        self._needs_reset = True
        self._profile: MotionProfile | None = None
        self._profile_start = 0.0
        self._pending: _Pending | None = None
        self._last_submit = -math.inf
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uio2-policy")
        # Called (on the worker thread) when a decision is ready, so the owner can tick at once
        # instead of at the next control period; the node wires it to a guard condition.
        self.on_decision_ready: Callable[[], None] | None = None
        encode = getattr(getattr(policy, "vocab", None), "encode", None)
        self._count_tokens: Callable[[str], int] = (
            (lambda text: len(encode(text))) if callable(encode) else (lambda text: len(text.split()))
        )

    # -- sensor inputs (any thread) --------------------------------------------------------------------
    def on_image(
        self, view: str, rgb: np.ndarray, stamp_ns: int, now: float | None = None, clock_ns: int | None = None
    ) -> None:
        """A camera frame with its header stamp; `clock_ns` is the node clock (ROS time) it is checked
        against (None: no stamp-age check). A frame with its predecessor's stamp is not new."""
        if view not in self.cfg.views:
            raise ValueError(f"unknown camera view {view!r}; configured views are {self.cfg.views}")
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
            raise ValueError(f"camera frame must be HxWx3 uint8, got {rgb.dtype} {rgb.shape}")
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)) or stamp_ns < 0:
            raise ValueError(f"frame stamp {stamp_ns!r} is not a non-negative integer of nanoseconds")
        stamp_ns = int(stamp_ns)
        with self._lock:
            last = self._frames.get(view)
            if last is not None and last.stamp_ns == stamp_ns:
                self._frame_problem[view] = "frozen_camera"  # the same frame again: it does not get younger
                self.stats["repeated_stamp_frames"] += 1
                return
        limit = self.cfg.max_stamp_age_s
        if clock_ns is not None and limit > 0:
            age = (int(clock_ns) - stamp_ns) / 1e9
            if abs(age) > limit:
                with self._lock:
                    self._frame_problem[view] = "bad_stamp"
                    self.stats["bad_stamp_frames"] += 1
                when = f"{age:.3f} s before" if age > 0 else f"{-age:.3f} s after"
                raise ValueError(f"frame stamped {when} the node clock (max_stamp_age_s {limit}): not used")
        if self.cfg.image_height:
            rgb = resize(rgb, self.cfg.image_height, self.cfg.image_width)
        with self._lock:
            self._frames[view] = _Frame(rgb, stamp_ns, self.clock() if now is None else now)
            self._frame_problem.pop(view, None)

    def _check_xy(self, what: str, x: float, y: float) -> tuple[float, float]:
        x, y = float(x), float(y)
        bound = self.cfg.nav_workspace_m
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"{what} ({x}, {y}) is not finite")
        if abs(x) > bound or abs(y) > bound:
            raise ValueError(f"{what} ({x:.6g}, {y:.6g}) is outside the workspace: |x|, |y| <= {bound} m "
                             "(nav_workspace_m)")  # fmt: skip
        return x, y

    @staticmethod
    def _check_frame(what: str, frame_id: str) -> str:
        if not frame_id:
            raise ValueError(f"{what} has an empty frame_id; name its frame (the odometry frame, e.g. odom)")
        return str(frame_id)

    def on_odometry(self, x: float, y: float, yaw: float, frame_id: str, now: float | None = None) -> None:
        x, y = self._check_xy("odometry position", x, y)
        if not math.isfinite(yaw):
            raise ValueError(f"odometry yaw {yaw} is not finite")
        frame_id = self._check_frame("odometry", frame_id)
        with self._lock:
            self._odom, self._odom_frame = (x, y, float(yaw)), frame_id
            self._odom_received = self.clock() if now is None else now

    def on_goal(self, x: float, y: float, frame_id: str) -> None:
        """A new navigation goal (in the odometry frame) starts a new episode."""
        x, y = self._check_xy("goal", x, y)
        frame_id = self._check_frame("goal", frame_id)
        with self._lock:
            self._goal, self._goal_frame = (x, y), frame_id
            self._new_episode()

    def on_instruction(self, text: str) -> None:
        """A new instruction (the prompt) starts a new episode; too long -> ValueError, kept the old one."""
        text = str(text)
        if len(text) > self.cfg.max_instruction_chars:
            raise ValueError(
                f"instruction of {len(text)} characters is longer than max_instruction_chars "
                f"{self.cfg.max_instruction_chars}: ignored"
            )
        tokens = self._count_tokens(text)
        if tokens > self.cfg.max_instruction_tokens:
            raise ValueError(
                f"instruction of {tokens} tokens is longer than max_instruction_tokens "
                f"{self.cfg.max_instruction_tokens}: ignored"
            )
        with self._lock:
            self._instruction = text
            self._new_episode()

    def on_audio(self, samples: np.ndarray) -> None:
        keep = max(self.cfg.audio_samples, 1)
        samples = np.asarray(samples, np.float64).reshape(-1)[-keep:]
        if not np.isfinite(samples).all():
            raise ValueError("audio chunk holds non-finite samples")
        with self._lock:
            fresh = np.clip(samples, -1.0, 1.0).astype(np.float32)
            self._audio = np.concatenate([self._audio, fresh])[-keep:]

    def set_enabled(self, enabled: bool) -> None:
        """Enabling (from disabled) starts a new episode; disabling stops at the next tick."""
        with self._lock:
            if enabled and not self.enabled:
                self._new_episode()
            self.enabled = bool(enabled)

    def _new_episode(self) -> None:
        self.episode += 1
        self.step = 0
        self.done = False
        self._needs_reset = True
        self._profile = None
        self._last_submit = -math.inf

    # -- the control loop --------------------------------------------------------------------------------
    def tick(self, now: float | None = None, stamp: float | None = None) -> TickOutput:
        """One control period: returns what to publish. Never blocks on the policy, never raises.

        `now` (the runner's clock) times the watchdogs; `stamp` (seconds, default `now`) is the time
        the command will carry, and the one the command limiter uses, so acceleration measured
        between command stamps holds exactly.
        """
        now = self.clock() if now is None else now
        stamp = now if stamp is None else stamp
        with self._lock:
            out = TickOutput(stamp=stamp)
            try:
                self._harvest(now, out)
                velocity = self._control(now, stamp, out)
            except Exception as err:  # a bug or an input nobody foresaw: stop, say why, keep going
                self.stats["tick_error"] += 1
                self._profile = None
                self._needs_reset = True
                out.events.append(f"tick error (robot stopped): {type(err).__name__}: {err}")
                velocity = self.limiter.stop(stamp, "tick_error")
            if self.cfg.family == "pointnav":
                out.velocity = velocity
            return out

    def _stop(self, stamp: float, reason: str, out: TickOutput) -> VelocityCommand:
        if reason != self.limiter.last.reason:
            out.events.append(f"stop: {reason}")
        self.stats[reason] += 1
        self._profile = None
        return self.limiter.stop(stamp, reason)

    def _stale_image(self, now: float, frames: list[_Frame]) -> str:
        for view, f in zip(self.cfg.views, frames, strict=True):
            if now - f.received > self.cfg.max_image_age_s:
                return self._frame_problem.get(view, "stale_image")
        return ""

    def _control(self, now: float, stamp: float, out: TickOutput) -> VelocityCommand:
        if not self.enabled:
            return self._stop(stamp, "disabled", out)
        frames = [self._frames.get(v) for v in self.cfg.views]
        if any(f is None for f in frames):
            return self._stop(stamp, "no_image", out)
        stale = self._stale_image(now, frames)  # type: ignore[arg-type]
        if stale:
            return self._stop(stamp, stale, out)
        if self.cfg.family == "pointnav" and self._goal is not None:
            if self._odom is None:
                return self._stop(stamp, "no_odometry", out)
            if now - self._odom_received > self.cfg.max_odom_age_s:
                return self._stop(stamp, "stale_odometry", out)
        pending = self._pending
        if pending is not None and now - pending.submitted > self.cfg.max_policy_latency_s:
            if not pending.late:
                pending.late = True
                limit = self.cfg.max_policy_latency_s
                out.events.append(f"policy slower than {limit}s: its result will be dropped")
            return self._stop(stamp, "policy_timeout", out)
        if self._profile is not None:
            t = now - self._profile_start
            if t < self._profile.duration:
                v, w = self._profile.velocity(t)
                return self.limiter.limit(VelocityCommand(v, w, "motion"), stamp)
            self._profile = None
        if self.done:
            return self._stop(stamp, "episode_done", out)
        if pending is None and now - self._last_submit >= self.cfg.policy_period_s:
            problem = self._submit(now, frames)  # type: ignore[arg-type]
            if problem:
                return self._stop(stamp, problem, out)
        return self.limiter.limit(VelocityCommand(0.0, 0.0, "waiting_for_policy"), stamp)

    def _observation(self, frames: list[_Frame]) -> tuple[dict[str, Any] | None, list[float] | None, str]:
        if self.cfg.family == "vima":
            rgb = {v: f.rgb.transpose(2, 0, 1) for v, f in zip(self.cfg.views, frames, strict=True)}
            return {"rgb": rgb, "ee": 0}, None, ""
        if self._goal is None:
            return None, None, "no_goal"
        if self._odom is None:
            return None, None, "no_odometry"
        if self._goal_frame and self._odom_frame and self._goal_frame != self._odom_frame:
            return None, None, "goal_frame_mismatch"
        rho, phi = pointgoal(self._odom, self._goal)
        if not (math.isfinite(rho) and math.isfinite(phi)):  # cannot happen within the workspace bound
            return None, None, "bad_pointgoal"
        obs: dict[str, Any] = {"rgb": frames[0].rgb,
                               "pointgoal_with_gps_compass": np.array([rho, phi], np.float32)}  # fmt: skip
        if self.cfg.audio_samples:
            clip = np.zeros(self.cfg.audio_samples, np.float32)
            if len(self._audio):
                clip[-len(self._audio) :] = self._audio
            obs["audio"] = clip[None]
        return obs, [rho, phi], ""

    def _submit(self, now: float, frames: list[_Frame]) -> str:
        if self.step >= self.cfg.max_episode_steps:
            self.done = True
            return "episode_done"
        obs, goal, problem = self._observation(frames)
        if obs is None:
            return problem
        task = None
        if self._needs_reset:
            from policies.base import TaskSpec

            shape = frames[0].rgb.shape[:2]
            obs_space, action_space = spaces_for(self.cfg, shape)
            task = TaskSpec(env_id=f"ros/{self.cfg.family}", observation_space=obs_space,
                            action_space=action_space, prompt=self._instruction)  # fmt: skip
            self._needs_reset = False
        future = self._executor.submit(self._decide, task, obs)
        if self.on_decision_ready is not None:
            notify = self.on_decision_ready
            future.add_done_callback(lambda _: notify())
        stamps = {v: f.stamp_ns for v, f in zip(self.cfg.views, frames, strict=True)}
        self._pending = _Pending(future, self.episode, now, stamps, goal)
        self._last_submit = now
        return ""

    def _decide(self, task: Any, obs: dict[str, Any]) -> tuple[Any, dict[str, Any], float]:
        """Runs on the worker thread: the only place the policy is called."""
        start = time.perf_counter()
        if task is not None:
            self.policy.reset(task)
        action = self.policy.act(obs)
        info = dict(getattr(self.policy, "last_info", None) or {})
        return action, info, 1000 * (time.perf_counter() - start)

    def _harvest(self, now: float, out: TickOutput) -> None:
        pending = self._pending
        if pending is None or not pending.future.done():
            return
        self._pending = None
        try:
            action, info, ms = pending.future.result()
        except Exception as err:  # the policy failed: hold still, say why, start the episode afresh
            self.stats["policy_error"] += 1
            self._needs_reset = True
            out.events.append(f"policy error: {type(err).__name__}: {err}")
            return
        if pending.late or pending.episode != self.episode:
            self.stats["discarded_late" if pending.late else "discarded_old_episode"] += 1
            return
        fallback = bool(info.get("fallback", False))
        safe_action = None if fallback else self._checked_action(action, out)
        fallback = safe_action is None
        if fallback:
            self.stats["fallback"] += 1
            out.events.append(f"undecodable policy output {info.get('decoded_text', '')!r}: holding still")
        out.decision = Decision(
            episode=self.episode, step=self.step, family=self.cfg.family,
            text=str(info.get("decoded_text", "")), fallback=fallback,
            action=action_to_json(safe_action), instruction=self._instruction,
            image_topics=dict(self.cfg.image_topics), image_stamps_ns=pending.stamps,
            pointgoal=pending.pointgoal, decision_ms=round(ms, 3),
        )  # fmt: skip
        self.step += 1
        self.stats["decisions"] += 1
        if fallback:
            return
        if self.cfg.family == "pointnav":
            if safe_action == STOP:
                self.done = True
                out.events.append(f"episode {self.episode}: the policy called stop")
            else:
                self._profile, self._profile_start = self.cfg.motion.profile(safe_action), now
        else:
            out.pick_place = self._pick_place(safe_action)

    def _checked_action(self, action: Any, out: TickOutput) -> Any:
        """The action if it is well formed for this family, else None (treated as the codec fallback)."""
        try:
            if self.cfg.family == "pointnav":
                a = int(np.asarray(action).reshape(-1)[0])
                return a if 0 <= a <= 3 else None
            sizes = {"pose0_position": 2, "pose0_rotation": 4, "pose1_position": 2, "pose1_rotation": 4}
            checked = {k: np.asarray(action[k], np.float64).reshape(-1) for k in sizes}
            ok = all(v.size == sizes[k] and np.isfinite(v).all() for k, v in checked.items())
            return checked if ok else None
        except (TypeError, ValueError, KeyError, IndexError, OverflowError) as err:
            out.events.append(f"malformed action {action!r}: {err}")
            return None

    def _pick_place(self, action: dict[str, np.ndarray]) -> PickPlace:
        poses = []
        for name in ("pose0", "pose1"):
            x, y = clamp_workspace(tuple(action[f"{name}_position"][:2]), self.cfg.workspace_low,
                                   self.cfg.workspace_high)  # fmt: skip
            poses.append((x, y, yaw_from_quaternion(*(float(q) for q in action[f"{name}_rotation"][:4]))))
        return PickPlace(*poses)

    @property
    def deciding(self) -> bool:
        """A decision is in flight on the worker thread."""
        return self._pending is not None and not self._pending.future.done()

    def wait_for_decision(self, timeout: float | None = None) -> bool:
        """Block until the in-flight decision (if any) is ready; for tests and benchmarks, not the node."""
        pending = self._pending
        if pending is None:
            return False
        pending.future.exception(timeout=timeout)
        return True

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
