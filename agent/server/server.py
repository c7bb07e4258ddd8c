"""The policy server: websockets connections, sessions, limits, and HTTP health / metrics on the same port.

Each connection may hold several sessions (a vectorised client has one per env row); they are freed
when the client closes them or the connection drops (crash, kill, network loss: websockets' pings
notice a silent peer). A bad request gets an error reply on its own connection; nothing it does
reaches other sessions. `GET /healthz` and `GET /metrics` are plain HTTP on the websocket port.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agent.server import openpi
from agent.server.backends import RowBackend
from agent.server.batcher import Batcher, Session
from agent.server.metrics import Metrics
from agent.server.protocol import PROTOCOL_VERSION, Limits, ProtocolError, decode, encode, error_reply
from agent.server.spaces import check_observation, decode_task, task_bytes

if TYPE_CHECKING:
    from agent.server.openpi import OpenPIEnv
    from agent.server.warmup import WarmUp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # localhost unless told otherwise
    port: int = 8765  # 0: any free port (see PolicyServer.port)
    token: str | None = None  # shared secret: `Authorization: Bearer TOKEN` on connect and /metrics
    batch_window_ms: float = 5.0
    max_batch: int = 64
    call_timeout_s: float = 300.0  # per act request, queueing included (the first call also compiles)
    max_sessions: int = 1024
    max_sessions_per_connection: int = 256
    max_sessions_per_client: int = 512  # per peer address (one robot or simulator host)
    max_total_space_bytes: int = 512 * 2**20  # declared space bytes of all open sessions together
    limits: Limits = field(default_factory=Limits)
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    openpi: OpenPIEnv | None = None  # serve openpi clients for this task instead of the native protocol
    warmup: WarmUp | None = None  # run these batch buckets once before accepting connections
    # numpy's BLAS threads while serving (process-wide; None: leave them). The model thread's image
    # preprocessing is many small matrix products: on a busy CPU, BLAS threads waiting for each other
    # made each model call 5x slower and its p99 / p50 worse (docs/server.md, Benchmark)
    blas_threads: int | None = 1


class PolicyServer:
    """Serves one backend; `start()` binds, `wait_closed()` serves until `close()`."""

    def __init__(self, backend: RowBackend, config: ServerConfig | None = None):
        self.backend, self.config = backend, config or ServerConfig()
        self.metrics = Metrics()
        self.sessions: dict[int, Session] = {}
        self._ids = itertools.count(1)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uio2-model")
        self._server: Server | None = None
        self._batcher_task: asyncio.Task | None = None
        self._connections = 0
        self._space_bytes = 0  # declared by open sessions, plus resets being built
        self._reserved_sessions = 0  # resets being built
        self._client_sessions: Counter[str] = Counter()
        self.warm_up: dict[str, Any] | None = None  # what the warm-up ran (also in /metrics)
        self._blas_limits: Any = None

    # -- lifecycle --
    async def start(self) -> None:
        cfg = self.config
        if cfg.blas_threads is not None:
            self._limit_blas(cfg.blas_threads)
        if cfg.warmup is not None:  # before binding: no client waits behind a compile
            from agent.server.warmup import run_warm_up

            log.info("warm-up: compiling the batch buckets before accepting connections")
            self.warm_up = await asyncio.get_running_loop().run_in_executor(
                self._executor, run_warm_up, self.backend, cfg.warmup, cfg.max_batch
            )
        self.batcher = Batcher(
            self.backend,
            self._executor,
            self.metrics,
            window_s=cfg.batch_window_ms / 1000,
            max_batch=cfg.max_batch,
            open_sessions=lambda: len(self.sessions),
        )
        self._server = await serve(
            self._handle_openpi if cfg.openpi is not None else self._handle,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            compression=None,
            max_size=cfg.limits.max_message_bytes,
            ping_interval=cfg.ping_interval_s,
            ping_timeout=cfg.ping_timeout_s,
        )
        self._batcher_task = asyncio.create_task(self.batcher.run())
        log.info("policy server (%s) on ws://%s:%d", self.backend.description, cfg.host, self.port)

    def _limit_blas(self, threads: int) -> None:
        from threadpoolctl import threadpool_info, threadpool_limits

        self._blas_limits = threadpool_limits(limits=threads, user_api="blas")
        got = {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
        if got - {threads}:  # threadpoolctl lets one live thread at a time control OpenBLAS
            log.warning("numpy's BLAS threads stay at %s, not %d: another thread controls them", got, threads)

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.sockets[0].getsockname()[1]

    async def wait_closed(self) -> None:
        assert self._server is not None
        await self._server.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._batcher_task is not None:
            self._batcher_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._batcher_task
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._blas_limits is not None:
            self._blas_limits.restore_original_limits()
            self._blas_limits = None
            from threadpoolctl import OpenBLASController  # let another thread set limits again

            getattr(OpenBLASController, "clear_controlling_thread", lambda: None)()

    def snapshot(self) -> dict[str, Any]:
        return self.metrics.snapshot(
            sessions=len(self.sessions),
            connections=self._connections,
            declared_space_bytes=self._space_bytes,
            warm_up=self.warm_up,
            blas_threads=self.config.blas_threads,
            compilations=getattr(self.backend, "compilations", lambda: None)(),
            policy=self.backend.name,
            model=self.backend.description,
        )

    # -- HTTP: auth, health, metrics --
    def _authorized(self, headers: Headers) -> bool:
        if not self.config.token:
            return True
        given = headers.get("Authorization", "").encode()
        # `Bearer` (our client) or `Api-Key` (openpi's client); both compared in constant time
        bearer = hmac.compare_digest(given, f"Bearer {self.config.token}".encode())
        return hmac.compare_digest(given, f"Api-Key {self.config.token}".encode()) or bearer

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path in ("/healthz", "/health"):
            return _json_response(connection, HTTPStatus.OK, {"status": "ok", "sessions": len(self.sessions)})
        if len(request.headers.get_all("Authorization")) > 1:
            self.metrics.error("bad_request")
            return connection.respond(HTTPStatus.BAD_REQUEST, "more than one Authorization header\n")
        if not self._authorized(request.headers):
            self.metrics.error("unauthorized")
            return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong token\n")
        if path == "/metrics":
            return _json_response(connection, HTTPStatus.OK, self.snapshot())
        return None  # the websocket handshake

    # -- websocket --
    async def _handle(self, ws: ServerConnection) -> None:
        owned: dict[int, Session] = {}
        client = _peer(ws)
        self._connections += 1
        self.metrics.count("connections")
        try:
            await ws.send(encode(self._hello()))
            async for data in ws:
                reply = await self._dispatch(data, owned, client)
                await ws.send(encode(reply))
        except ConnectionClosed:
            pass
        finally:
            self._close_connection(owned)

    async def _handle_openpi(self, ws: ServerConnection) -> None:
        """One openpi connection = one episode (see `openpi.py`): metadata first, then observation in,
        actions out; any error is a text frame and close code 1011, as openpi's own server does."""
        env = self.config.openpi
        assert env is not None
        owned: dict[int, Session] = {}
        client = _peer(ws)
        self._connections += 1
        self.metrics.count("connections")
        session: int | None = None
        prompt = ""
        prev_total_ms: float | None = None
        try:
            await ws.send(openpi.packb(env.metadata(policy=self.backend.name, model=self.backend.description,
                                                    limits=self.config.limits.to_dict())))  # fmt: skip
            async for data in ws:
                start = time.perf_counter()
                try:
                    obs, given, assets = env.split(openpi.unpackb(data, self.config.limits))
                    self.metrics.count("requests_openpi")
                    if session is None:
                        prompt = given or ""
                        task = env.wire_task(prompt, assets)
                        reply = await self._reset({"items": [{"session": None, "task": task}]}, owned, client)
                        session = reply["sessions"][0]
                    elif given and given != prompt:  # later steps may resend the prompt or omit it
                        raise ProtocolError(
                            "bad_request",
                            "the prompt changed within a connection: reconnect for a new episode",
                        )
                    reply = await self._act({"items": [{"session": session, "obs": obs}]}, owned)
                except ProtocolError as err:
                    self.metrics.error(err.code)
                    await ws.send(f"{err.code}: {err.message}")
                    await ws.close(1011, err.code)
                    return
                except Exception as err:  # a bug: report it to this client alone, keep serving the others
                    log.exception("openpi request failed")
                    self.metrics.error("internal")
                    await ws.send(f"internal: {type(err).__name__}: {err}")
                    await ws.close(1011, "internal")
                    return
                result = reply["results"][0]
                infer_ms = 1000 * (time.perf_counter() - start)
                timing = {"infer_ms": infer_ms, **({"prev_total_ms": prev_total_ms} if prev_total_ms else {})}
                await ws.send(
                    openpi.packb(
                        {
                            "actions": env.flat_action(result["action"]),
                            "server_timing": timing,
                            "policy_timing": {"batch_size": result["info"].get("server_batch_size", 1)},
                        }
                    )
                )
                prev_total_ms = 1000 * (time.perf_counter() - start)
        except ConnectionClosed:
            pass
        finally:
            self._close_connection(owned)

    def _close_connection(self, owned: dict[int, Session]) -> None:
        """A connection ended (either protocol): its sessions are freed with it."""
        self._connections -= 1
        if owned:
            self.metrics.count("sessions_freed_on_disconnect", len(owned))
        for sid in list(owned):
            self._free(sid, owned)

    def _hello(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "op": "hello",
            "version": PROTOCOL_VERSION,
            "policy": self.backend.name,
            "model": self.backend.description,
            "limits": cfg.limits.to_dict(),
            "batch_window_ms": cfg.batch_window_ms,
            "call_timeout_s": cfg.call_timeout_s,
        }

    async def _dispatch(self, data: Any, owned: dict[int, Session], client: str) -> dict[str, Any]:
        request_id = None
        try:
            message = decode(data, self.config.limits)
            request_id = message.get("id")
            op = message["op"]
            self.metrics.count(f"requests_{op}" if op in ("reset", "act", "close") else "requests_other")
            if op == "reset":
                return {
                    "op": "reply",
                    "id": request_id,
                    "ok": True,
                    **await self._reset(message, owned, client),
                }
            if op == "act":
                return {"op": "reply", "id": request_id, "ok": True, **await self._act(message, owned)}
            if op == "close":
                for sid in _int_list(message.get("sessions"), "sessions"):
                    self._free(sid, owned)
                return {"op": "reply", "id": request_id, "ok": True}
            raise ProtocolError("bad_request", f"unknown op {op!r} (reset, act, close)")
        except ProtocolError as err:
            self.metrics.error(err.code)
            return error_reply(request_id, err.code, err.message)
        except Exception as err:  # a bug or a backend failure: report it, keep the connection
            log.exception("request failed")
            self.metrics.error("internal")
            return error_reply(request_id, "internal", f"{type(err).__name__}: {err}")

    def _items(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        items = message.get("items")
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            raise ProtocolError("bad_request", "'items' must be a non-empty list of maps")
        if len(items) > self.config.limits.max_items:
            raise ProtocolError("bad_request", f"{len(items)} items; limit {self.config.limits.max_items}")
        return items

    def _owned(self, sid: Any, owned: dict[int, Session]) -> Session:
        if type(sid) is not int or sid not in owned:
            raise ProtocolError(
                "unknown_session", f"session {sid!r} is not open on this connection (reset first)"
            )
        return owned[sid]

    async def _reset(self, message: dict[str, Any], owned: dict[int, Session], client: str) -> dict[str, Any]:
        cfg, limits = self.config, self.config.limits
        items = self._items(message)
        specs = [item.get("task") for item in items]
        costs = [task_bytes(spec, limits) for spec in specs]  # cheap: nothing built yet
        reuse = [item.get("session") for item in items]
        if len({sid for sid in reuse if sid is not None}) != sum(sid is not None for sid in reuse):
            raise ProtocolError("bad_request", "a session appears twice in one reset request")
        for sid in reuse:
            if sid is not None and self._owned(sid, owned).busy:
                raise ProtocolError("session_busy", f"session {sid} has a step in flight")
        new = sum(sid is None for sid in reuse)
        if (
            len(self.sessions) + self._reserved_sessions + new > cfg.max_sessions
            or len(owned) + new > cfg.max_sessions_per_connection
            or self._client_sessions[client] + new > cfg.max_sessions_per_client
        ):
            raise ProtocolError(
                "overloaded",
                f"session limit reached ({cfg.max_sessions} in all, {cfg.max_sessions_per_client} per "
                f"client, {cfg.max_sessions_per_connection} per connection)",
            )
        if self._space_bytes + sum(costs) > cfg.max_total_space_bytes:
            raise ProtocolError(
                "overloaded",
                f"the open sessions' declared spaces would exceed the server's total of "
                f"{cfg.max_total_space_bytes} B; close sessions or declare smaller spaces",
            )
        self._space_bytes += sum(costs)  # reserved while the spaces and rows are built
        self._reserved_sessions += new
        self._client_sessions[client] += new
        loop = asyncio.get_running_loop()
        try:
            # Gymnasium allocates arrays of each Box's shape: off the event loop
            tasks = await loop.run_in_executor(None, lambda: [decode_task(s, limits) for s in specs])
            # on the model thread: rows may hold model-side state, and it orders resets with steps
            rows = await loop.run_in_executor(
                self._executor, lambda: [self.backend.new_row(t) for t in tasks]
            )
        except ValueError as err:
            if isinstance(err, ProtocolError):
                raise
            raise ProtocolError("invalid_task", str(err)) from err
        finally:
            self._space_bytes -= sum(costs)
            self._reserved_sessions -= new
            self._client_sessions[client] -= new
        sessions = []
        for sid, task, cost, (key, row) in zip(reuse, tasks, costs, rows, strict=True):
            if sid is not None:
                self._free(sid, owned, count=False)
            session = Session(
                sid if sid is not None else next(self._ids), key, row, task.observation_space, cost, client
            )
            self.sessions[session.id] = owned[session.id] = session
            self._space_bytes += cost
            self._client_sessions[client] += 1
            self.metrics.count("episodes")
            sessions.append(session.id)
        return {"sessions": sessions}

    async def _act(self, message: dict[str, Any], owned: dict[int, Session]) -> dict[str, Any]:
        start = time.perf_counter()
        items = self._items(message)
        sessions = [self._owned(item.get("session"), owned) for item in items]
        if len({s.id for s in sessions}) != len(sessions):
            raise ProtocolError("bad_request", "a session appears twice in one act request")
        for i, (item, session) in enumerate(zip(items, sessions, strict=True)):
            if session.stale:
                raise ProtocolError(
                    "session_stale",
                    f"session {session.id}: a timed-out step may have changed its history; reset it",
                )
            if session.busy:
                raise ProtocolError("session_busy", f"session {session.id} has a step in flight")
            if session.failed:
                raise ProtocolError(
                    "policy_error",
                    f"session {session.id}: the policy failed on an earlier step ({session.failed}); "
                    "reset it",
                )
            check_observation(session.observation_space, item.get("obs"), f"items[{i}].obs")
            info = item.get("info") or {}
            if not isinstance(info, dict):
                raise ProtocolError("bad_request", f"items[{i}].info must be a map")
        for s in sessions:
            s.busy = True
        queued = [
            self.batcher.submit(s, item["obs"], item.get("info") or {})
            for s, item in zip(sessions, items, strict=True)
        ]
        try:
            _, pending = await asyncio.wait([q.future for q in queued], timeout=self.config.call_timeout_s)
            if pending:
                for q in queued:
                    if not q.future.done():
                        q.cancelled = True  # dropped if not started
                        q.session.stale = q.taken  # started: it may still change the row
                        q.future.cancel()
                raise ProtocolError("timeout", f"no result within {self.config.call_timeout_s} s")
            results = [q.future.result() for q in queued]
        finally:
            for s in sessions:
                s.busy = False
        self.metrics.act(1000 * (time.perf_counter() - start))
        return {"results": [{"action": a, "info": info} for a, info in results]}

    def _free(self, sid: int, owned: dict[int, Session], count: bool = True) -> None:
        session = owned.pop(sid, None)
        if session is None:
            if count:
                raise ProtocolError("unknown_session", f"session {sid!r} is not open on this connection")
            return
        session.closed = True
        self.sessions.pop(sid, None)
        self._space_bytes -= session.space_bytes
        self._client_sessions[session.client] -= 1
        if not self._client_sessions[session.client]:
            del self._client_sessions[session.client]
        self.batcher.poke()
        if count:
            self.metrics.count("sessions_closed")


def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


def _int_list(value: Any, name: str) -> list[int]:
    if not isinstance(value, list) or not all(type(v) is int for v in value):
        raise ProtocolError("bad_request", f"'{name}' must be a list of ints")
    return value


def _json_response(connection: ServerConnection, status: HTTPStatus, body: dict[str, Any]) -> Response:
    response = connection.respond(status, json.dumps(body) + "\n")
    response.headers["Content-Type"] = "application/json"
    return response


class ServerThread:
    """A PolicyServer on its own event loop in a background thread (tests, benchmarks, embedding)."""

    def __init__(self, backend: RowBackend, config: ServerConfig | None = None):
        self.server = PolicyServer(backend, config)
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="uio2-policy-server", daemon=True)

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as err:
            self._error = err  # set before `start()` is woken to look at it
            raise
        finally:
            self._started.set()
        await self._stop.wait()
        await self.server.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as err:
            self._error = err
            self._started.set()
        finally:
            self._loop.close()

    def start(self) -> ServerThread:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=30)

    def _limit_blas(self, threads: int) -> None:
        from threadpoolctl import threadpool_info, threadpool_limits

        self._blas_limits = threadpool_limits(limits=threads, user_api="blas")
        got = {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
        if got - {threads}:  # threadpoolctl lets one live thread at a time control OpenBLAS
            log.warning("numpy's BLAS threads stay at %s, not %d: another thread controls them", got, threads)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"ws://{self.server.config.host}:{self.port}"

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
