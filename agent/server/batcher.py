"""The batching window: act requests of concurrent sessions gathered into one backend call per group.

A batch closes `window_s` after its oldest request arrived (or after the model became free, if later),
at once when every open session already has a request waiting (nothing more can come), or when
`max_batch` rows are waiting. Rows run in arrival order, one backend call per group, on one worker
thread: the event loop keeps accepting requests (and answering health checks) while the model runs,
and the backend never sees two calls at once. If a call fails, its rows are retried one by one, so a
session whose observations break the policy gets the error alone and the others in its batch get
their actions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from agent.server.backends import RowBackend
from agent.server.metrics import Metrics
from agent.server.protocol import ProtocolError

log = logging.getLogger(__name__)


@dataclass
class Session:
    """One episode of one client; its row state lives here between steps."""

    id: int
    key: Hashable
    row: Any
    observation_space: Any
    space_bytes: int = 0  # declared bytes of its spaces, counted against the server's total
    client: str = ""  # the peer's address, for the per-client session limit
    steps: int = 0
    busy: bool = False  # an act is in flight (one step at a time per session)
    stale: bool = False  # a timed-out step may still change the row: the client must reset
    closed: bool = False
    failed: str | None = None  # the policy failed on this session's step: the client must reset


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

    def poke(self) -> None:
        """Re-check whether the batch can close (a session closed: it will not send a step)."""
        if self._pending:
            self._wake.set()

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
            results = await self._call(loop, key, batch)
        except Exception as err:
            if len(batch) == 1:
                self._fail(batch[0], err)
                return
            # one row may have broken the whole call: retry row by row, so only its session gets the error
            self.metrics.count("batches_retried_row_by_row")
            for item in batch:
                await self._run_batch(loop, key, [item])
            return
        model_ms = 1000 * (time.perf_counter() - start)
        self.metrics.batch(len(batch), model_ms, [1000 * (start - i.submitted) for i in batch])
        for item, (action, info) in zip(batch, results, strict=True):
            item.session.steps += 1
            if not item.future.done():
                item.future.set_result((action, {**info, "server_batch_size": len(batch)}))

    async def _call(self, loop: asyncio.AbstractEventLoop, key: Hashable, batch: list[_Item]) -> list:
        return await loop.run_in_executor(
            self.executor,
            self.backend.act_rows,
            key,
            [i.session.row for i in batch],
            [i.obs for i in batch],
            [i.info for i in batch],
        )

    def _fail(self, item: _Item, err: Exception) -> None:
        """This session's own step failed: it alone gets the error, and must reset (its row may be half
        updated, and a session that keeps failing would make every batch it joins run twice)."""
        log.warning("session %d: the policy failed on its step: %s", item.session.id, err)
        item.session.failed = f"{type(err).__name__}: {err}"
        if not item.future.done():
            item.future.set_exception(
                ProtocolError(
                    "policy_error",
                    f"the policy failed on this session's observation ({item.session.failed}); "
                    "reset the session",
                )
            )
