"""The one Policy protocol every decision maker follows (UIO2, oracle, random, replay, remote).

    policy.reset(task)          # at episode start: prompt, prompt assets, spaces, the env's oracle
    action = policy.act(obs)    # one step
    policy.reset_batch(tasks); actions = policy.act_batch(observations)   # vector envs

`last_info` holds what the policy wants recorded about its last decision (the decoded text,
whether the codec's fallback was used, latency); the runner copies it into results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym


@dataclass
class TaskSpec:
    """What a policy may know about an episode when it starts."""

    env_id: str
    observation_space: gym.Space
    action_space: gym.Space
    prompt: str = ""
    prompt_assets: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    oracle: Callable[[dict, dict], Any] | None = None  # privileged: (obs, info) -> action
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls, env: gym.Env, info: dict[str, Any] | None = None, *, seed: int | None = None,
        env_id: str | None = None, with_oracle: bool = False,
    ) -> TaskSpec:  # fmt: skip
        """The task of the episode `env.reset()` just started (`info`: what reset returned, which
        holds the prompt and its assets for tabletop / VIMA envs). `with_oracle` adds the env's
        privileged expert, for the oracle policy only."""
        info = info or {}
        if env_id is None:
            env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        return cls(
            env_id=env_id, observation_space=env.observation_space, action_space=env.action_space,
            prompt=str(info.get("prompt", "")), prompt_assets=info.get("prompt_assets", {}) or {}, seed=seed,
            oracle=env_oracle(env, seed) if with_oracle else None,
            extra={"meta_info": info["meta_info"]} if "meta_info" in info else {},
        )  # fmt: skip


def env_oracle(env: gym.Env, seed: int | None) -> Callable[[dict, dict], Any] | None:
    """The env's privileged expert as `(obs, info) -> action`, or None if it has none."""
    base = env.unwrapped
    if hasattr(base, "make_oracle"):
        return base.make_oracle(seed).act
    if hasattr(base, "oracle_action"):
        return lambda obs, info: base.oracle_action()
    return None


@runtime_checkable
class Policy(Protocol):
    name: str

    def reset(self, task: TaskSpec) -> None: ...

    def act(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> Any: ...


def select_action(policy: Any, obs: dict[str, Any], info: dict[str, Any] | None = None) -> Any:
    """LeRobot's name for one step (`policy.select_action(obs)`): the same as `policy.act`."""
    return policy.act(obs, info)


class BatchedPolicy:
    """Default batched form: one independent copy of the per-episode state per row.

    Subclasses that can do better (UIO2: one model call for all rows) override `act_batch`.
    """

    def reset_batch(self, tasks: Sequence[TaskSpec]) -> None:
        self._tasks = list(tasks)
        self._row_policies = [self.spawn() for _ in tasks]
        for p, t in zip(self._row_policies, tasks, strict=True):
            p.reset(t)

    def reset_row(self, row: int, task: TaskSpec) -> None:
        self._row_policies[row].reset(task)

    def act_batch(self, observations: Sequence[dict], infos: Sequence[dict] | None = None) -> list[Any]:
        infos = infos or [{}] * len(observations)
        return [p.act(o, i) for p, o, i in zip(self._row_policies, observations, infos, strict=True)]

    def row_info(self, row: int) -> dict[str, Any]:
        return dict(getattr(self._row_policies[row], "last_info", {}))

    def spawn(self) -> Any:
        raise NotImplementedError
