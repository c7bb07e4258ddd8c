"""Policy server robustness: token, limits, malformed requests, timeouts, freed sessions, health/metrics.

A cheap backend (the random policy) stands in for the model: what is tested here is the server."""

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import gymnasium as gym
import msgpack
import numpy as np
import pytest
from websockets.sync.client import connect

from agent.server.backends import PerSessionBackend
from agent.server.client import RemoteError, RemotePolicy, fetch_json
from agent.server.protocol import Limits, decode, encode, encode_task
from agent.server.server import ServerConfig, ServerThread
from policies.base import TaskSpec
from policies.baselines import RandomPolicy

ROOT = Path(__file__).resolve().parents[1]
OBS_SPACE = gym.spaces.Dict(
    {
        "rgb": gym.spaces.Box(0, 255, (32, 32, 3), np.uint8),
        "depth": gym.spaces.Box(0.0, 1.0, (32, 32, 1), np.float32),
        "pointgoal_with_gps_compass": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
    }
)
TASK = TaskSpec("pointnav", OBS_SPACE, gym.spaces.Discrete(4), seed=0)


def _obs(**override):
    obs = {
        "rgb": np.zeros((32, 32, 3), np.uint8),
        "depth": np.ones((32, 32, 1), np.float32),
        "pointgoal_with_gps_compass": np.array([1.0, 0.5], np.float32),
    }
    obs.update(override)
    return obs


def _random_backend():
    return PerSessionBackend(lambda: RandomPolicy(0), "random")


@pytest.fixture()
def server():
    with ServerThread(_random_backend(), ServerConfig(port=0, batch_window_ms=2)) as running:
        yield running


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_health_and_metrics_over_http_on_the_same_port(server):
    assert fetch_json(server.url, "/healthz") == {"status": "ok", "sessions": 0}
    with RemotePolicy(server.url) as p:
        p.reset(TASK)
        assert p.act(_obs()) in range(4)
        metrics = fetch_json(server.url)
    assert metrics["sessions"] == 1 and metrics["connections"] == 1
    assert metrics["batches"] == 1 and metrics["act_latency_ms"]["count"] == 1
    assert {"p50", "p90", "p99"} <= set(metrics["act_latency_ms"])


def test_token_is_required_when_set():
    config = ServerConfig(port=0, token="s3cret")
    with ServerThread(_random_backend(), config) as running:
        with pytest.raises(PermissionError, match="token"):
            RemotePolicy(running.url)
        with pytest.raises(PermissionError, match="token"):
            RemotePolicy(running.url, token="guess")
        with pytest.raises(PermissionError, match="token"):
            fetch_json(running.url)
        assert fetch_json(running.url, "/healthz")["status"] == "ok"  # liveness probes need no secret
        with RemotePolicy(running.url, token="s3cret") as p:
            p.reset(TASK)
            assert p.act(_obs()) in range(4)
        assert fetch_json(running.url, token="s3cret")["errors"]["unauthorized"] == 3


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (
            _obs(rgb=np.zeros((32, 32, 3), np.float64)),
            r"obs\['rgb'\]: expected uint8 array of shape \(32, 32, 3\)",
        ),
        (_obs(rgb=np.zeros((512, 512, 3), np.uint8)), r"got uint8 array of shape \(512, 512, 3\)"),
        (
            _obs(depth=np.ones((32, 32), np.float32)),
            r"obs\['depth'\]: expected float32 array of shape \(32, 32, 1\)",
        ),
        ({"rgb": np.zeros((32, 32, 3), np.uint8)}, r"missing \['depth', 'pointgoal_with_gps_compass'\]"),
        ({**_obs(), "extra": np.zeros(3, np.float32)}, r"unexpected \['extra'\]"),
    ],
)
def test_invalid_observations_are_refused_while_another_session_keeps_working(server, bad, expected):
    with RemotePolicy(server.url) as good, RemotePolicy(server.url) as faulty:
        good.reset(TASK)
        faulty.reset(TASK)
        with pytest.raises(RemoteError, match=expected) as err:
            faulty.act(bad)
        assert err.value.code == "invalid_observation"
        assert good.act(_obs()) in range(4)
        assert faulty.act(_obs()) in range(4)  # the faulty client's own connection survives too
    assert fetch_json(server.url)["errors"]["invalid_observation"] == 1


def test_oversized_messages_are_refused_while_another_session_keeps_working():
    config = ServerConfig(port=0, limits=Limits(max_message_bytes=64 * 1024))
    with ServerThread(_random_backend(), config) as running, RemotePolicy(running.url) as good:
        good.reset(TASK)
        faulty = RemotePolicy(running.url)
        faulty.reset(TASK)
        huge = _obs(rgb=np.zeros((256, 256, 3), np.uint8))
        with pytest.raises(ValueError, match="exceeds the server's message limit"):
            faulty.act(huge)  # the client checks the limit the server announced
        faulty.limits = Limits()  # a client that does not: the server closes with 1009
        with pytest.raises(RemoteError, match="message too big"):
            faulty.act(huge)
        assert good.act(_obs()) in range(4)
        assert _wait_for(lambda: fetch_json(running.url)["sessions"] == 1)  # the faulty session was freed
        faulty.close()


def _raw_request(ws, payload: bytes) -> dict:
    ws.send(payload)
    return decode(ws.recv(timeout=10))


def test_malformed_requests_get_error_replies_and_the_connection_keeps_working(server):
    bad_array = msgpack.ExtType(1, msgpack.packb(["|O", [2], "raw", b"\x00" * 16]))
    lying_array = msgpack.ExtType(1, msgpack.packb(["<f4", [1000, 1000], "raw", b"\x00" * 8]))
    with connect(server.url, compression=None) as ws:
        assert decode(ws.recv(timeout=10))["op"] == "hello"
        cases = [
            (b"\xc1garbage", "malformed msgpack"),
            (msgpack.packb([1, 2, 3]), "a message must be a map"),
            (
                msgpack.packb({"op": "act", "id": 1, "items": [{"session": 1, "obs": bad_array}]}),
                "'|O' not allowed",
            ),
            (
                msgpack.packb({"op": "act", "id": 2, "items": [{"session": 1, "obs": lying_array}]}),
                "needs 4000000",
            ),
            (
                encode({"op": "act", "id": 3, "items": [{"session": 99, "obs": _obs()}]}),
                "session 99 is not open",
            ),
            (encode({"op": "dance", "id": 4}), "unknown op"),
            (
                encode({"op": "reset", "id": 5, "items": [{"session": None, "task": {"env_id": "x"}}]}),
                "space map",
            ),
        ]
        for payload, message in cases:
            reply = _raw_request(ws, payload)
            assert reply["ok"] is False and message in reply["error"]["message"], reply
        ws.send("a text frame")
        assert "binary msgpack" in decode(ws.recv(timeout=10))["error"]["message"]
        reply = _raw_request(
            ws, encode({"op": "reset", "id": 6, "items": [{"session": None, "task": encode_task(TASK)}]})
        )
        assert reply["ok"] and len(reply["sessions"]) == 1
        reply = _raw_request(
            ws, encode({"op": "act", "id": 7, "items": [{"session": reply["sessions"][0], "obs": _obs()}]})
        )
        assert reply["ok"] and reply["id"] == 7 and reply["results"][0]["action"] in range(4)


_KILLED_CLIENT = """
import sys, time
import gymnasium as gym, numpy as np
from agent.server.client import RemotePolicy
space = gym.spaces.Box(0, 255, (4,), np.uint8)
p = RemotePolicy(sys.argv[1])
p.reset_batch([{"env_id": "x", "observation_space": space, "action_space": gym.spaces.Discrete(2)}] * 2)
p.act_batch([np.zeros(4, np.uint8)] * 2)
print("ready", flush=True)
time.sleep(60)
"""


def test_a_killed_clients_sessions_are_freed(server):
    command = [sys.executable, "-c", _KILLED_CLIENT, server.url]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert fetch_json(server.url)["sessions"] == 2
        with RemotePolicy(server.url) as other:
            other.reset(TASK)
            proc.kill()
            proc.wait(timeout=10)
            assert _wait_for(lambda: fetch_json(server.url)["sessions"] == 1)
            assert fetch_json(server.url)["counters"]["sessions_freed_on_disconnect"] == 2
            assert other.act(_obs()) in range(4)
    finally:
        proc.kill()


class _SlowOnce(PerSessionBackend):
    """Its first step blocks until `release` is set (a stuck model); later ones are instant."""

    def __init__(self):
        super().__init__(lambda: RandomPolicy(0), "slow")
        self.calls = 0
        self.release, self.first_done = threading.Event(), threading.Event()

    def act_rows(self, key, rows, observations, infos):
        self.calls += 1
        if self.calls == 1:
            self.release.wait(timeout=60)
            out = super().act_rows(key, rows, observations, infos)
            self.first_done.set()
            return out
        return super().act_rows(key, rows, observations, infos)


def test_a_call_past_its_timeout_is_answered_and_the_session_must_reset():
    backend = _SlowOnce()
    config = ServerConfig(port=0, call_timeout_s=0.3)
    with ServerThread(backend, config) as running, RemotePolicy(running.url) as p:
        p.reset(TASK)
        try:
            with pytest.raises(RemoteError, match=r"no result within 0\.3 s") as err:
                p.act(_obs())
            assert err.value.code == "timeout"
            assert not backend.first_done.is_set()  # answered while the step was still stuck
            with pytest.raises(RemoteError) as err:
                p.act(_obs())
            assert err.value.code == "session_stale"
        finally:
            backend.release.set()  # the stuck step finishes
        assert backend.first_done.wait(timeout=30)
        p.reset(TASK)
        assert p.act(_obs()) in range(4)


def test_client_side_timeout_raises_timeout_error():
    backend = _SlowOnce()
    with ServerThread(backend, ServerConfig(port=0)) as running:
        p = RemotePolicy(running.url, timeout=0.2)
        p.reset(TASK)
        try:
            with pytest.raises(TimeoutError, match="no reply"):
                p.act(_obs())
        finally:
            backend.release.set()
        p.close()


class _FailsOnZeroDepth(PerSessionBackend):
    """A policy bug no up-front check knows about: any call holding an all-zero depth image fails."""

    def __init__(self):
        super().__init__(lambda: RandomPolicy(0), "buggy")
        self.calls: list[int] = []

    def act_rows(self, key, rows, observations, infos):
        self.calls.append(len(rows))
        if any(not o["depth"].any() for o in observations):
            raise RuntimeError("depth is all zero")
        return super().act_rows(key, rows, observations, infos)


def test_an_unforeseen_policy_failure_is_retried_row_by_row_and_fails_only_its_session():
    """Two clients in one batch (10 s window: it closes as soon as both wait); the bad row fails the
    call, the rows are retried one by one, only its session gets policy_error and must reset (its next
    step is refused without calling the model)."""
    backend = _FailsOnZeroDepth()
    barrier = threading.Barrier(2)
    honest_done = threading.Event()  # the honest row's own retry may still run after the bad row's error
    got: dict[str, object] = {}

    def run(name: str, obs: dict) -> None:
        with RemotePolicy(running.url, timeout=30) as p:
            p.reset(TASK)
            barrier.wait(timeout=10)
            try:
                got[name] = p.act(obs)
                honest_done.set()
            except RemoteError as err:
                got[name] = err.code
                honest_done.wait(timeout=30)  # so that only the refused step's calls are counted
                calls = len(backend.calls)
                with pytest.raises(RemoteError, match=r"failed on an earlier step.*reset it"):
                    p.act(_obs())
                got["model calls on the refused step"] = len(backend.calls) - calls
                p.reset(TASK)
                got["after reset"] = p.act(_obs())

    with ServerThread(backend, ServerConfig(port=0, batch_window_ms=10_000)) as running:
        threads = [
            threading.Thread(target=run, args=a)
            for a in (("honest", _obs()), ("bad", _obs(depth=np.zeros((32, 32, 1), np.float32))))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        metrics = fetch_json(running.url)
    assert got["honest"] in range(4) and got["bad"] == "policy_error", got
    assert got["model calls on the refused step"] == 0 and got["after reset"] in range(4), got
    assert backend.calls[:3] == [2, 1, 1]  # the shared batch, then its rows one by one
    assert metrics["counters"]["batches_retried_row_by_row"] == 1 and metrics["errors"]["policy_error"] == 2


def test_one_connection_serves_many_sessions_and_sessions_are_isolated(server):
    barrier = threading.Barrier(2)
    actions: dict[int, list] = {}

    def run(seed: int) -> None:
        with RemotePolicy(server.url, compress=seed == 1, send_info=True) as p:  # both wire options
            p.reset_batch([TaskSpec("pointnav", OBS_SPACE, gym.spaces.Discrete(4), seed=seed)] * 3)
            barrier.wait(timeout=10)
            actions[seed] = [p.act_batch([_obs()] * 3, [{"distance": np.float32(1.0)}] * 3) for _ in range(5)]

    threads = [threading.Thread(target=run, args=(s,)) for s in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(actions[0]) == len(actions[1]) == 5
    for seed, got in actions.items():  # each session's random stream is its own, whatever the batching
        local = RandomPolicy(0)
        local.reset(TaskSpec("pointnav", OBS_SPACE, gym.spaces.Discrete(4), seed=seed))
        assert got == [[local.act(_obs())] * 3 for _ in range(5)]
    metrics = fetch_json(server.url)
    assert metrics["sessions"] == 0 and metrics["batch_size"]["max"] >= 3


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _raw_box(shape, dtype="|u1") -> dict:
    return {"type": "box", "low": 0, "high": 255, "shape": list(shape), "dtype": dtype}


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc (Linux)")
def test_a_tiny_reset_cannot_make_the_server_allocate_its_declared_spaces(server):
    """About 300 bytes declaring four 16 MiB uint8 Boxes (each within the per-array limit) once cost
    256 MiB of RSS per reset; the declared total is now refused before any space is built."""
    amplifying = {"type": "dict", "spaces": {f"k{i}": _raw_box((16 * 2**20,)) for i in range(4)}}
    task = {"env_id": "x", "observation_space": amplifying, "action_space": {"type": "discrete", "n": 2}}
    request = msgpack.packb({"op": "reset", "id": 1, "items": [{"session": None, "task": task}] * 4})
    assert len(request) < 1200
    before = _rss_bytes()
    with connect(server.url, compression=None) as ws:
        assert decode(ws.recv(timeout=10))["op"] == "hello"
        for _ in range(3):
            reply = _raw_request(ws, request)
            assert reply["ok"] is False and reply["error"]["code"] == "invalid_task", reply
            assert "limit per session" in reply["error"]["message"]
    assert _rss_bytes() - before < 32 * 2**20
    assert fetch_json(server.url)["declared_space_bytes"] == 0


def test_declared_bytes_of_all_open_sessions_and_sessions_per_connection_are_bounded():
    config = ServerConfig(port=0, max_total_space_bytes=3 * 2**20, max_sessions_per_connection=6)
    task = {
        "env_id": "x",
        "observation_space": _raw_box((2**20,)),
        "action_space": {"type": "discrete", "n": 2},
    }
    reset = {"op": "reset", "id": 1, "items": [{"session": None, "task": task}]}
    with ServerThread(_random_backend(), config) as running, connect(running.url, compression=None) as ws:
        decode(ws.recv(timeout=10))
        for _ in range(3):  # 1 MiB (+ 8 B for the action space) each: the third one is over 3 MiB
            reply = _raw_request(ws, encode(reset))
        assert reply["ok"] is False and reply["error"]["code"] == "overloaded", reply
        assert "total" in reply["error"]["message"]
        assert fetch_json(running.url)["sessions"] == 2
        small = {**task, "observation_space": _raw_box((4,))}
        replies = [
            _raw_request(ws, encode({**reset, "items": [{"session": None, "task": small}]})) for _ in range(5)
        ]
        assert [r["ok"] for r in replies] == [True] * 4 + [False]
        assert "6 per connection" in replies[-1]["error"]["message"]
        sessions = fetch_json(running.url)
        assert sessions["sessions"] == 6 and sessions["declared_space_bytes"] == 2 * (2**20 + 8) + 4 * 12
        reply = _raw_request(ws, encode({"op": "close", "id": 2, "sessions": [replies[0]["sessions"][0]]}))
        assert reply["ok"]
        assert fetch_json(running.url)["declared_space_bytes"] == 2 * (2**20 + 8) + 3 * 12


def test_two_authorization_headers_get_http_400_without_a_traceback(caplog):
    with ServerThread(_random_backend(), ServerConfig(port=0, token="t")) as running:
        request = (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{running.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nAuthorization: Bearer t\r\nAuthorization: Bearer x\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            sock.sendall(request.encode())
            status = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status.startswith(b"HTTP/1.1 400"), status
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_prompts_over_the_character_limit_are_refused_at_reset(server):
    with RemotePolicy(server.url) as p:
        with pytest.raises(RemoteError, match="prompt of 5000 characters; the server's limit is 4096") as err:
            p.reset(TaskSpec("pointnav", OBS_SPACE, gym.spaces.Discrete(4), prompt="x" * 5000))
        assert err.value.code == "invalid_task"
        p.reset(TaskSpec("pointnav", OBS_SPACE, gym.spaces.Discrete(4), prompt="x" * 4096))
        assert p.act(_obs()) in range(4)


def test_the_server_runs_numpys_blas_on_one_thread_and_restores_it_on_close():
    """Image preprocessing is many small matrix products: on a busy CPU, BLAS threads waiting for each
    other made model calls 5x slower (benchmarks/server.py). The limit is process-wide while serving."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    def set_blas(n: int) -> None:  # from a thread that ends: threadpoolctl lets the next thread take over
        thread = threading.Thread(target=threadpool_limits, kwargs={"limits": n, "user_api": "blas"})
        thread.start()
        thread.join()

    before = max(blas())
    set_blas(2)  # whatever this machine's default: the server must change it
    try:
        assert blas() == {2}
        with ServerThread(_random_backend(), ServerConfig(port=0)) as running:
            assert blas() == {1} and fetch_json(running.url)["blas_threads"] == 1
        assert blas() == {2}
        with ServerThread(_random_backend(), ServerConfig(port=0, blas_threads=None)):
            assert blas() == {2}
    finally:
        set_blas(before)
