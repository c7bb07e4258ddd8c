"""`serve` as a process: prints where it listens, serves a client, stops cleanly on SIGTERM."""

import signal
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from agent.server.client import RemotePolicy, fetch_json
from agent.server.serve import build_backend
from policies.base import TaskSpec

ROOT = Path(__file__).resolve().parents[1]


def test_serve_process_prints_its_port_serves_and_stops_on_sigterm():
    command = [
        sys.executable,
        "-m",
        "agent.server.serve",
        "--policy",
        "random",
        "--port",
        "0",
        "--token",
        "t",
    ]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on ws://127.0.0.1:"), (
            line,
            proc.stderr.read() if proc.poll() else "",
        )
        url = line.removeprefix("listening on ")
        task = TaskSpec("x", gym.spaces.Box(0, 1, (3,), np.float32), gym.spaces.Discrete(3), seed=1)
        with RemotePolicy(url, token="t") as policy:
            policy.reset(task)
            assert policy.act(np.zeros(3, np.float32)) in range(3)
            assert policy.description.startswith("random")
        assert fetch_json(url, token="t")["counters"]["requests_act"] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()


def test_only_policies_a_server_can_run_are_servable():
    with pytest.raises(ValueError, match="cannot serve policy 'oracle'"):
        build_backend("oracle")


def test_a_non_loopback_bind_without_a_token_is_refused(monkeypatch, capsys):
    from agent.cli import main

    monkeypatch.delenv("UIO2_SERVER_TOKEN", raising=False)

    async def must_not_bind(*args):  # if the check were missing, fail here instead of serving forever
        raise AssertionError("the server was about to bind 0.0.0.0 without a token")

    monkeypatch.setattr("agent.server.serve._serve", must_not_bind)
    assert main(["serve", "--policy", "random", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0 without --token" in err and "--insecure" in err
    assert "Traceback" not in err


def test_warm_up_outside_openpi_mode_needs_its_env_and_counts_are_checked(capsys):
    from agent.cli import main

    assert main(["serve", "--policy", "random", "--port", "0", "--warmup", "2"]) == 2
    err = capsys.readouterr().err
    assert "--warmup needs --warmup-env ENV" in err and "Traceback" not in err
    assert main(["serve", "--policy", "random", "--port", "0", "--warmup", "-1"]) == 2
    assert "--warmup must be >= 0 rows, got -1" in capsys.readouterr().err
    assert main(["serve", "--policy", "random", "--port", "0", "--blas-threads", "-1"]) == 2
    assert "--blas-threads must be >= 0, got -1" in capsys.readouterr().err
