"""What the server batches over: per-session row state and one call that acts for many rows.

Sessions come and go at any step, so a batch is whichever sessions asked within the window, not a
fixed set of rows. `reset_row`/`act_batch` cannot express that (act_batch steps *every* row, which
would push a stale frame into an idle session's history), so the server holds each session's row
state itself and lends the rows of one batch to a policy instance for one `act_batch` call:

- `UIO2Backend`: one `UIO2Policy` per group (task family x audio, which must not mix in one batch),
  all sharing one model (loaded and compiled once). A session's state is the policy's row object
  (history, codec, prompt) made by `reset_batch([task])`; a batch sets `policy.rows` to the rows of
  the sessions in it. With greedy decoding a session's actions are those of an in-process policy that
  sees the same rows in the same batches (one row per batch: exactly those of `num_envs=1`).
- `PerSessionBackend`: any single-episode policy (random, replay, ...): one instance per session,
  called in a loop; for tests and for serving baselines.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol

from agent.server.compiles import compilations
from agent.server.families import check_task
from policies.base import TaskSpec


class RowBackend(Protocol):
    name: str
    description: str

    def new_row(self, task: TaskSpec) -> tuple[Hashable, Any]:
        """(group key, row state) for a new episode; ValueError if the task cannot be served."""
        ...

    def act_rows(
        self, key: Hashable, rows: Sequence[Any], observations: Sequence[dict], infos: Sequence[dict]
    ) -> list[tuple[Any, dict[str, Any]]]:
        """(action, row info) per row; all rows share `key`; called from one worker thread only."""
        ...


class UIO2Backend:
    """Batches any mix of UIO2 sessions of one group into one model call."""

    name = "uio2"

    def __init__(self, model: Any, vocab: Any, description: str = "", **policy_kwargs: Any):
        self.model, self.vocab, self.policy_kwargs = model, vocab, policy_kwargs
        self.description = description
        self._policies: dict[Hashable, Any] = {}
        compilations()  # start counting

    def compilations(self) -> int:
        """jit cache misses in this process so far (see `agent.server.compiles`)."""
        return compilations()

    def _policy(self, key: Hashable) -> Any:
        if key not in self._policies:
            from policies.uio2_policy import UIO2Policy

            self._policies[key] = UIO2Policy(self.model, self.vocab, **self.policy_kwargs)
        return self._policies[key]

    def new_row(self, task: TaskSpec) -> tuple[Hashable, Any]:
        from policies.uio2_policy import task_family

        key = (task_family(task.action_space), "audio" in getattr(task.observation_space, "spaces", {}))
        policy = self._policy(key)
        check_task(task, key[0], policy.view, policy.max_frames)  # refused here, not in a shared batch
        if task.prompt:  # tokenised once per episode, here: a prompt the text window cannot hold is refused
            tokens = len(self.vocab.encode(task.prompt))
            if tokens > policy.text_len - 1:
                raise ValueError(
                    f"prompt of {tokens} tokens; this server's text window holds {policy.text_len - 1} "
                    "(with EOS)"
                )
        policy.reset_batch([task])  # builds the row (prompt images, codec) and the group's input builder
        return key, policy.rows[0]

    def act_rows(
        self, key: Hashable, rows: Sequence[Any], observations: Sequence[dict], infos: Sequence[dict]
    ) -> list[tuple[Any, dict[str, Any]]]:
        """One model call for `rows`, padded to the next bucket size (1, 2, 4, 8, ...) with throwaway copies
        of the first row, so the decode compiles once per bucket instead of once per batch size."""
        policy = self._policies[key]
        n = len(rows)
        pad = bucket_size(n) - n
        policy.rows = list(rows) + [_throwaway(rows[0]) for _ in range(pad)]
        policy.last_infos = [{} for _ in policy.rows]
        actions = policy.act_batch([*observations, *[observations[0]] * pad], [*infos, *[infos[0]] * pad])
        return [(a, {**policy.row_info(i), "padded_batch_size": n + pad}) for i, a in enumerate(actions[:n])]


def bucket_size(n: int) -> int:
    """The smallest power of two >= n: the batch sizes the model is compiled for."""
    return 1 << max(0, n - 1).bit_length()


def _throwaway(row: Any) -> Any:
    """A copy of a row whose history can be pushed to without touching the original's."""
    pad = copy.copy(row)
    pad.history = copy.deepcopy(row.history)
    return pad


class PerSessionBackend:
    """One single-episode policy per session (no model batching); `make` builds a fresh one."""

    def __init__(self, make: Callable[[], Any], description: str = ""):
        self.make = make
        probe = make()
        self.name = getattr(probe, "name", type(probe).__name__)
        self.description = description or self.name

    def new_row(self, task: TaskSpec) -> tuple[Hashable, Any]:
        policy = self.make()
        policy.reset(task)
        return "all", policy

    def act_rows(
        self, key: Hashable, rows: Sequence[Any], observations: Sequence[dict], infos: Sequence[dict]
    ) -> list[tuple[Any, dict[str, Any]]]:
        out = []
        for policy, obs, info in zip(rows, observations, infos, strict=True):
            out.append((policy.act(obs, info), dict(getattr(policy, "last_info", {}) or {})))
        return out
