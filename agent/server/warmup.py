"""Server warm-up: run every batch bucket once before accepting connections.

The model compiles its decode once per padded batch size (`backends.bucket_size`): without a warm-up
the first client of each bucket pays that compile (about 26 s for the tiny model on a CPU) inside its
first `act`. With `uio2 serve --warmup N` (default 1 in openpi mode, where the task is the server's)
the server runs buckets 1, 2, 4, ... up to N rows of a real episode of the env before it binds, with
throwaway sessions, so the first real request of those sizes compiles nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from agent.server.backends import RowBackend, bucket_size
from agent.server.compiles import compilations
from policies.base import TaskSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarmUp:
    """What to warm: a task and one of its observations, for batches of up to `max_rows` rows."""

    task: TaskSpec
    obs: Any
    max_rows: int = 1
    steps: int = 2  # the first step has an empty history; later ones may lower differently

    @classmethod
    def from_env(cls, env_id: str, max_rows: int, **env_kwargs: Any) -> WarmUp:
        from agent.envs import resolve_env

        env = resolve_env(env_id, **env_kwargs)[0].make()
        try:
            obs, info = env.reset(seed=0)
            return cls(TaskSpec.from_env(env, info, seed=0, env_id=env_id), obs, max_rows)
        finally:
            env.close()

    def buckets(self, max_batch: int) -> list[int]:
        """1, 2, 4, ... up to the bucket of `max_rows` (never beyond the server's `max_batch`)."""
        top = bucket_size(max(1, min(self.max_rows, max_batch)))
        return [1 << i for i in range(top.bit_length())]


def run_warm_up(backend: RowBackend, plan: WarmUp, max_batch: int) -> dict[str, Any]:
    """Run each bucket `plan.steps` times with throwaway rows (on the model thread: the backend is
    called from one thread only); returns what it did, for the log and `/metrics`."""
    counted = hasattr(backend, "compilations")
    before = compilations() if counted else None
    start = time.perf_counter()
    buckets = plan.buckets(max_batch)
    for size in buckets:
        rows = [backend.new_row(plan.task) for _ in range(size)]
        key = rows[0][0]
        for _ in range(plan.steps):
            backend.act_rows(key, [r for _, r in rows], [plan.obs] * size, [{}] * size)
    done = {
        "env": plan.task.env_id,
        "buckets": buckets,
        "steps": plan.steps,
        "seconds": round(time.perf_counter() - start, 3),
        "compilations": compilations() - before if before is not None else None,
    }
    n = done["compilations"]
    compiled = "nothing to compile" if n is None else f"{n} compilations"
    log.info(
        "warm-up: ran batch buckets %s of %s (%d steps each) in %.1f s, %s; the first requests of these "
        "sizes compile nothing", buckets, plan.task.env_id, plan.steps, done["seconds"], compiled,
    )  # fmt: skip
    return done
