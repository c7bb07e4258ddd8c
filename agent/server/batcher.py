"""The batching window: act requests of concurrent sessions gathered into one backend call per group.

A batch closes `window_s` after its oldest request arrived (or after the model became free, if later),
at once when every open session already has a request waiting (nothing more can come), or when
`max_batch` rows are waiting. Rows run in arrival order, one backend call per group, on one worker
thread: the event loop keeps accepting requests (and answering health checks) while the model runs,
and the backend never sees two calls at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from agent.server.backends import RowBackend
from agent.server.metrics import Metrics


@dataclass
class Session:
    """One episode of one client; its row state lives here between steps."""

    id: int
    key: Hashable
    row: Any
    observation_space: Any
    steps: int = 0
    busy: bool = False  # an act is in flight (one step at a time per session)
    stale: bool = False  # a timed-out step may still change the row: the client must reset
    closed: bool = False


@dataclass
class _Item:
    session: Session
    obs: Any
    info: Any
    future: asyncio.Future
    submitted: float = field(default_factory=time.perf_counter)
    taken: bool = False
    cancelled: bool = False


class Batcher:
    def __init__(
        self,
        backend: RowBackend,
        executor: Executor,
        metrics: Metrics,
        *,
        window_s: float,
        max_batch: int,
        open_sessions: Callable[[], int],
    ):
        self.backend, self.executor, self.metrics = backend, executor, metrics
        self.window_s, self.max_batch, self.open_sessions = window_s, max_batch, open_sessions
        self._pending: list[_Item] = []
        self._free_since = 0.0  # when the last backend call ended
        self._wake = asyncio.Event()

    def submit(self, session: Session, obs: Any, info: Any) -> _Item:
        item = _Item(session, obs, info, asyncio.get_running_loop().create_future())
        self._pending.append(item)
        self._wake.set()
        return item

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            while self._pending:
                if self._ready():
                    break
                # counted from when the model became free too: clients whose replies just went out get
                # one window to send their next step, so lockstep clients stay in one batch
                deadline = max(self._pending[0].submitted, self._free_since) + self.window_s
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - time.perf_counter()))
                except TimeoutError:
                    break
            items = [i for i in self._pending if not i.cancelled]
            self._pending.clear()
            self._wake.clear()
            groups: dict[Hashable, list[_Item]] = {}
            for item in items:
                groups.setdefault(item.session.key, []).append(item)
            for key, group in groups.items():
                for start in range(0, len(group), self.max_batch):
                    await self._run_batch(loop, key, group[start : start + self.max_batch])
            self._free_since = time.perf_counter()

    def _ready(self) -> bool:
        live = [i for i in self._pending if not i.cancelled]
        return len(live) >= min(self.max_batch, max(1, self.open_sessions()))

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, key: Hashable, batch: list[_Item]) -> None:
        start = time.perf_counter()
        for item in batch:
            item.taken = True
        try:
            results = await loop.run_in_executor(
                self.executor,
                self.backend.act_rows,
                key,
                [i.session.row for i in batch],
                [i.obs for i in batch],
                [i.info for i in batch],
            )
        except Exception as err:  # the backend failed for this batch: answer its rows, keep serving
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(err)
            return
        model_ms = 1000 * (time.perf_counter() - start)
        self.metrics.batch(len(batch), model_ms, [1000 * (start - i.submitted) for i in batch])
        for item, (action, info) in zip(batch, results, strict=True):
            item.session.steps += 1
            if not item.future.done():
                item.future.set_result((action, {**info, "server_batch_size": len(batch)}))
