"""Rollouts and evaluation: episodes of (env, policy) with per-episode results.

Episodes are run on `num_envs` in-process env copies per task, with one batched policy call per
step for all of them (the UIO2 policy then runs the model once for every env). Episode k of a
task is reset with seed `seed + k` whatever the batching, so every episode can be replayed alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from agent.envs import EnvEntry
from policies.base import TaskSpec
from policies.codecs import vima_noop_action
from uio2_errors import OptionError

log = logging.getLogger(__name__)


def noop_action(space: gym.Space) -> Any:
    """What to do when a policy has nothing to say (an oracle's None): move nothing."""
    if isinstance(space, gym.spaces.Dict) and "pose0_position" in space.spaces:
        return vima_noop_action()
    if isinstance(space, gym.spaces.Discrete):
        return 2  # turn in place
    raise ValueError(f"no no-op action defined for {space}")


@dataclass
class _Slot:
    env: gym.Env
    task: str
    level: str | None = None
    episode: int = -1
    seed: int = 0
    obs: Any = None
    info: Any = None
    steps: int = 0
    ret: float = 0.0
    fallbacks: int = 0
    none_actions: int = 0
    active: bool = False
    started: float = 0.0


class EpisodeSink:
    """Receives what happens (recording, videos); every method is optional to override."""

    def start(self, slot_task: str, seed: int, env: gym.Env, obs: Any, info: dict) -> None: ...
    def step(self, obs: Any, action: Any, reward: float, terminated: bool, truncated: bool, info: dict,
             policy_info: dict) -> None: ...  # fmt: skip
    def end(self, result: dict[str, Any]) -> None: ...


def _failure_reason(terminated: bool, truncated: bool, info: dict) -> str | None:
    if info.get("success"):
        return None
    if truncated:
        return "step_limit"
    if info.get("failure"):
        return "task_failure"
    if terminated:
        return "stopped_short" if "distance_to_goal" in info else "terminated"
    return "unfinished"


def _result(slot: _Slot, terminated: bool, truncated: bool, info: dict) -> dict[str, Any]:
    out = {
        "task": slot.task, "episode": slot.episode, "seed": slot.seed,
        "success": bool(info.get("success", False)), "steps": slot.steps, "return": slot.ret,
        "failure_reason": _failure_reason(terminated, truncated, info),
        "fallbacks": slot.fallbacks, "policy_none_actions": slot.none_actions,
        "wall_s": time.perf_counter() - slot.started,
    }  # fmt: skip
    if slot.level is not None:
        out["level"] = slot.level
    for key in ("spl", "soft_spl", "distance_to_goal", "collisions", "episode_id", "scene_id"):
        if key in info:
            value = info[key]
            out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def _split(env: gym.Env) -> bool:
    """Envs in worker processes (``VimaProcessEnv``) split step/reset into send and wait."""
    return hasattr(env, "step_async") and hasattr(env, "reset_async")


def run_task(
    entry: EnvEntry,
    policy: Any,
    episodes: int,
    seed: int,
    *,
    env_id: str,
    num_envs: int = 1,
    sinks: Sequence[Callable[[], EpisodeSink]] = (),
    progress: tqdm | None = None,
    max_steps: int | None = None,
) -> list[dict[str, Any]]:
    """Run `episodes` episodes of one task; returns one result dict per episode, in episode order."""
    if num_envs < 1 or episodes < 1:
        raise OptionError(f"num_envs and episodes must be >= 1, got {num_envs} and {episodes}")
    num_envs = min(num_envs, episodes)
    slots = [_Slot(entry.make(), entry.task, entry.level) for _ in range(num_envs)]
    slot_sinks = [[make() for make in sinks] for _ in slots]
    needs_oracle = getattr(policy, "name", "") == "oracle"
    next_episode, results = 0, []

    def begin(i: int) -> int:
        """Pick the slot's next episode; an env in a worker process (``reset_async``) starts resetting now."""
        nonlocal next_episode
        s = slots[i]
        s.episode, s.seed = next_episode, seed + next_episode
        next_episode += 1
        if _split(s.env):
            s.env.reset_async(seed=s.seed)
        return i

    def start(i: int) -> TaskSpec:
        s = slots[i]
        s.obs, s.info = s.env.reset_wait() if _split(s.env) else s.env.reset(seed=s.seed)
        s.steps, s.ret, s.fallbacks, s.none_actions, s.active = 0, 0.0, 0, 0, True
        s.started = time.perf_counter()
        for sink in slot_sinks[i]:
            sink.start(s.task, s.seed, s.env, s.obs, s.info)
        return TaskSpec.from_env(s.env, s.info, seed=s.seed, env_id=env_id, with_oracle=needs_oracle)

    try:
        policy.reset_batch([start(i) for i in [begin(i) for i in range(num_envs)]])
        while any(s.active for s in slots):
            actions = policy.act_batch([s.obs for s in slots], [s.info for s in slots])
            sent = []
            for i, (s, action) in enumerate(zip(slots, actions, strict=True)):
                if not s.active:
                    continue  # an idle row keeps the batch shape fixed; its output is ignored
                pinfo = policy.row_info(i)
                if action is None:
                    s.none_actions += 1
                    action = noop_action(s.env.action_space)
                s.fallbacks = int(pinfo.get("fallbacks", s.fallbacks))
                if _split(s.env):
                    s.env.step_async(action)  # workers step while the slots after them are sent theirs
                sent.append((i, s, action, pinfo))
            restart = []
            for i, s, action, pinfo in sent:
                step = s.env.step_wait() if _split(s.env) else s.env.step(action)
                obs, reward, terminated, truncated, info = step
                s.steps += 1
                s.ret += float(reward)
                if max_steps is not None and s.steps >= max_steps and not (terminated or truncated):
                    truncated = True
                for sink in slot_sinks[i]:
                    sink.step(s.obs, action, float(reward), terminated, truncated, info, pinfo)
                s.obs, s.info = obs, {**s.info, **info}
                if terminated or truncated:
                    result = _result(s, terminated, truncated, info)
                    results.append(result)
                    for sink in slot_sinks[i]:
                        sink.end(result)
                    if progress is not None:
                        progress.update(1)
                    s.active = False
                    if next_episode < episodes:
                        restart.append(begin(i))  # a worker resets while the other slots are handled
            for i in restart:
                policy.reset_row(i, start(i))
    finally:
        for s in slots:
            s.env.close()
    return sorted(results, key=lambda r: r["episode"])


def evaluate(
    entries: Sequence[EnvEntry],
    policy: Any,
    episodes: int,
    seed: int,
    *,
    env_id: str,
    num_envs: int = 1,
    sinks: Sequence[Callable[[], EpisodeSink]] = (),
    show_progress: bool = True,
    max_steps: int | None = None,
) -> list[dict[str, Any]]:
    """`episodes` per task for every task of the ENV string, with a progress bar."""
    results: list[dict[str, Any]] = []
    with tqdm(total=episodes * len(entries), desc=f"{env_id} / {getattr(policy, 'name', 'policy')}",
              disable=not show_progress, unit="ep") as bar:  # fmt: skip
        for entry in entries:
            results += run_task(entry, policy, episodes, seed, env_id=env_id, num_envs=num_envs, sinks=sinks,
                                progress=bar, max_steps=max_steps)  # fmt: skip
    return results
