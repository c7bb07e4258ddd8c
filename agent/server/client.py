"""`RemotePolicy`: a policy served by `uio2 serve`, behind the same protocol as local policies.

Needs only numpy, msgpack and websockets (no jax, flax, gymnasium or model code), so a robot, a ROS 2
node or a simulator worker can import it; `agent.rollout.evaluate` drives it like any batched policy.
One connection carries one session per row; the server keeps each session's history, so a step sends
only the new observation.

    policy = RemotePolicy("ws://127.0.0.1:8765", token=None)
    policy.reset(task); action = policy.act(obs)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from agent.server.protocol import PROTOCOL_VERSION, Limits, decode, encode, encode_task


class RemoteError(RuntimeError):
    """The server refused a request; `code` says why (invalid_observation, timeout, unknown_session, ...)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


def normalize_url(url: str) -> str:
    """`remote://h:p`, `h:p`, `ws://h:p` -> a websocket URL."""
    for prefix in ("remote://", "uio2://"):
        if url.startswith(prefix):
            url = "ws://" + url[len(prefix) :]
    return url if url.startswith(("ws://", "wss://")) else f"ws://{url}"


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def fetch_json(url: str, path: str = "/metrics", token: str | None = None, timeout: float = 10.0) -> dict:
    """GET the server's `/metrics` or `/healthz` (plain HTTP on the websocket port)."""
    http = normalize_url(url).replace("ws://", "http://", 1).replace("wss://", "https://", 1).rstrip("/")
    request = urllib.request.Request(http + path, headers=_headers(token))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        err.close()  # an open error response keeps the server waiting on the socket
        if err.code == 401:
            raise PermissionError(f"{http}{path}: missing or wrong token") from None
        raise ConnectionError(f"{http}{path}: HTTP {err.code}") from None


class RemotePolicy:
    """The Policy protocol (reset/act, reset_batch/reset_row/act_batch/row_info) over a websocket."""

    name = "remote"

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 300.0,
        *,
        compress: bool = False,
        send_info: bool = False,
        open_timeout: float = 10.0,
    ):
        """`token`: the server's shared secret (default: $UIO2_SERVER_TOKEN); `timeout`: seconds to wait
        for each reply; `compress`: zlib integer arrays (slow links); `send_info`: also send the env's
        info dict each step (the UIO2 policy does not read it)."""
        token = token if token is not None else os.environ.get("UIO2_SERVER_TOKEN")
        self.url, self.timeout = normalize_url(url), timeout
        self.compress, self.send_info = compress, send_info
        self._ids = itertools.count(1)
        self._sessions: list[int] = []
        self._row_infos: list[dict[str, Any]] = []
        self._stack = contextlib.ExitStack()
        try:
            # entered as a context manager: the form every websockets >= 13 supports without warnings
            self._ws: ClientConnection = self._stack.enter_context(
                connect(
                    self.url,
                    additional_headers=_headers(token),
                    open_timeout=open_timeout,
                    compression=None,
                    max_size=None,
                    close_timeout=2,
                )
            )
        except InvalidStatus as err:
            status = err.response.status_code
            if status == 401:
                raise PermissionError(f"{self.url} refused the connection: missing or wrong token") from err
            raise ConnectionError(f"{self.url} refused the connection (HTTP {status})") from err
        hello = self._recv()
        if hello.get("op") != "hello" or hello.get("version") != PROTOCOL_VERSION:
            self.close()
            raise ConnectionError(
                f"{self.url} speaks protocol {hello.get('version')}, not {PROTOCOL_VERSION}"
            )
        self.server_info = hello
        known = Limits.__dataclass_fields__
        self.limits = Limits(**{k: v for k, v in (hello.get("limits") or {}).items() if k in known})
        self.description = f"{hello.get('policy')} {hello.get('model')} @ {self.url}"

    # -- transport --
    def _recv(self, request_id: Any = None) -> dict[str, Any]:
        while True:
            try:
                data = self._ws.recv(timeout=self.timeout)
            except TimeoutError as err:
                raise TimeoutError(f"no reply from {self.url} within {self.timeout} s") from err
            except ConnectionClosed as err:
                raise RemoteError("connection_closed", _closed_reason(err)) from err
            message = decode(data, Limits(max_message_bytes=2**62, max_array_bytes=2**62))
            if request_id is None or message.get("id") == request_id:
                return message  # a reply to an earlier, timed-out request is dropped

    def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        message["id"] = request_id = next(self._ids)
        data = encode(message, compress=self.compress)
        if len(data) > self.limits.max_message_bytes:
            raise ValueError(
                f"request of {len(data)} bytes exceeds the server's message limit "
                f"({self.limits.max_message_bytes} bytes)"
            )
        try:
            self._ws.send(data)
        except ConnectionClosed as err:
            raise RemoteError("connection_closed", _closed_reason(err)) from err
        reply = self._recv(request_id)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise RemoteError(str(error.get("code", "error")), str(error.get("message", reply)))
        return reply

    # -- the policy protocol --
    def reset(self, task: Any) -> None:
        self.reset_batch([task])

    def act(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> Any:
        return self.act_batch([obs], [info or {}])[0]

    @property
    def last_info(self) -> dict[str, Any]:
        return self.row_info(0)

    def row_info(self, row: int) -> dict[str, Any]:
        return dict(self._row_infos[row]) if row < len(self._row_infos) else {}

    def reset_batch(self, tasks: Sequence[Any]) -> None:
        """One session per task; existing sessions are reused (reset), extra ones closed."""
        keep = self._sessions[: len(tasks)]
        if len(self._sessions) > len(tasks):
            self._call({"op": "close", "sessions": self._sessions[len(tasks) :]})
        items = [
            {"session": keep[i] if i < len(keep) else None, "task": encode_task(t)}
            for i, t in enumerate(tasks)
        ]
        self._sessions = list(self._call({"op": "reset", "items": items})["sessions"])
        self._row_infos = [{} for _ in tasks]

    def reset_row(self, row: int, task: Any) -> None:
        self._call({"op": "reset", "items": [{"session": self._sessions[row], "task": encode_task(task)}]})
        self._row_infos[row] = {}

    def act_batch(self, observations: Sequence[dict], infos: Sequence[dict] | None = None) -> list[Any]:
        if len(observations) != len(self._sessions):
            raise ValueError(
                f"{len(observations)} observations for {len(self._sessions)} sessions (reset_batch first)"
            )
        items: list[dict[str, Any]] = [
            {"session": s, "obs": o} for s, o in zip(self._sessions, observations, strict=True)
        ]
        if self.send_info and infos is not None:
            for item, info in zip(items, infos, strict=True):
                item["info"] = info or {}
        results = self._call({"op": "act", "items": items})["results"]
        self._row_infos = [r.get("info") or {} for r in results]
        return [r["action"] for r in results]

    def close(self) -> None:
        """Frees the sessions (the server also frees them when the connection drops)."""
        self._stack.close()
        self._sessions = []

    def __enter__(self) -> RemotePolicy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _closed_reason(err: ConnectionClosed) -> str:
    frame = err.rcvd or err.sent
    if frame is not None and frame.code == 1009:
        return f"the server closed the connection: message too big ({frame.reason or 'over its size limit'})"
    if frame is not None:
        return f"the server closed the connection (code {frame.code}: {frame.reason or 'no reason'})"
    return "the connection was lost"
