"""openpi mode driven by the real, unmodified client (`openpi-client` from PyPI): whole episodes of PointNav
and a tabletop task, the action layout, errors (text frame + close 1011), the token and isolation.

The served policy is the random baseline: what is tested here is the protocol and the server, not the
model (test_server_uio2.py covers the model through the same reset / act path)."""

import gymnasium as gym
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from agent.envs import resolve_env
from agent.server.backends import PerSessionBackend
from agent.server.client import fetch_json
from agent.server.openpi import OpenPIEnv
from agent.server.server import ServerConfig, ServerThread
from policies.baselines import RandomPolicy

websocket_client_policy = pytest.importorskip(
    "openpi_client.websocket_client_policy",
    reason="needs openpi-client (pip install --no-deps openpi-client; see the README's test command)",
)
POINTNAV = dict(width=32, height=32, max_episode_steps=6)
TABLETOP = "tabletop/visual_manipulation"


def _server(env_id: str, env: gym.Env) -> ServerThread:
    backend = PerSessionBackend(lambda: RandomPolicy(0), "random")
    openpi = OpenPIEnv.from_spaces(env_id, env.observation_space, env.action_space)
    return ServerThread(backend, ServerConfig(port=0, token="k", openpi=openpi))


@pytest.fixture(scope="module")
def pointnav():
    env = resolve_env("pointnav", **POINTNAV)[0].make()
    with _server("pointnav", env) as server:
        yield env, server
    env.close()


def _client(server: ServerThread, api_key: str | None = "k"):
    return websocket_client_policy.WebsocketClientPolicy("127.0.0.1", server.port, api_key=api_key)


def _flat(obs: dict, prefix: str = "") -> dict:
    """Observation keys joined by '/', as openpi clients send them."""
    out = {}
    for key, value in obs.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _episode(server: ServerThread, env: gym.Env, seed: int, to_action, first_extra) -> tuple[int, bool, dict]:
    """One episode = one connection, as openpi clients do (their reset() sends nothing)."""
    client = _client(server)
    obs, info = env.reset(seed=seed)
    steps, done, reply = 0, False, {}
    while not done:
        extra = first_extra(info) if steps == 0 else {"prompt": str(info.get("prompt", ""))}
        reply = client.infer({**_flat(obs), **extra})
        obs, _, terminated, truncated, info = env.step(to_action(reply["actions"]))
        steps, done = steps + 1, terminated or truncated
    client._ws.close()
    return steps, bool(info.get("success")), reply


def test_pointnav_episodes_with_the_real_openpi_client(pointnav):
    env, server = pointnav
    before = fetch_json(server.url, token="k")["counters"]
    meta = _client(server).get_server_metadata()
    assert meta["protocol"] == "openpi" and meta["env"] == "pointnav"
    assert meta["action_layout"] == [{"name": "action", "start": 0, "size": 1, "dtype": "int64", "n": 4}]
    actions = []

    def to_action(a):
        assert a.shape == (1, 1) and a.dtype == np.int64
        actions.append(int(a[0, 0]))
        return int(a[0, 0])

    lengths = [_episode(server, env, seed, to_action, lambda info: {"prompt": ""})[0] for seed in (0, 1)]
    assert all(1 <= n <= 6 for n in lengths) and len(actions) == sum(lengths)
    assert set(actions) <= {0, 1, 2, 3}
    after = fetch_json(server.url, token="k")
    assert after["counters"]["episodes"] - before.get("episodes", 0) == 2
    assert after["counters"]["requests_openpi"] - before.get("requests_openpi", 0) == sum(lengths)
    assert after["sessions"] == 0  # each connection's episode freed when it closed


def test_a_tabletop_episode_with_prompt_assets_and_the_flat_vima_layout():
    env = resolve_env(TABLETOP)[0].make()
    with _server(TABLETOP, env) as server:
        layout = _client(server).get_server_metadata()["action_layout"]
        assert [(e["name"], e["start"], e["size"]) for e in layout] == [
            ("pose0_position", 0, 2), ("pose0_rotation", 2, 4),
            ("pose1_position", 6, 2), ("pose1_rotation", 8, 4),
        ]  # fmt: skip

        def to_action(a):
            assert a.shape == (1, 12) and a.dtype == np.float32
            return {e["name"]: a[0, e["start"] : e["start"] + e["size"]] for e in layout}

        def first(info):  # the prompt and its images travel with the first observation
            return {"prompt": info["prompt"], "prompt_assets": info["prompt_assets"]}

        steps, _, reply = _episode(server, env, 0, to_action, first)
    env.close()
    timing = reply["server_timing"]
    assert steps >= 1 and timing["infer_ms"] > 0 and ("prev_total_ms" in timing) == (steps > 1)


def test_errors_are_a_text_frame_and_close_1011_and_never_reach_another_client(pointnav):
    env, server = pointnav
    obs, _ = env.reset(seed=0)
    with pytest.raises(InvalidStatus, match="401"):
        _client(server, api_key="wrong")
    good, bad = _client(server), _client(server)
    assert good.infer({**obs, "prompt": ""})["actions"].shape == (1, 1)
    wrong = {**obs, "rgb": obs["rgb"].astype(np.float32), "prompt": ""}
    with pytest.raises(RuntimeError, match=r"invalid_observation: items\[0\]\.obs\['rgb'\]: expected uint8"):
        bad.infer(wrong)
    with pytest.raises(ConnectionClosedError) as closed:
        bad._ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1011
    long_prompt = _client(server)
    with pytest.raises(RuntimeError, match="invalid_task: prompt of 5000 characters"):
        long_prompt.infer({**obs, "prompt": "x" * 5000})
    assert good.infer({**obs, "prompt": ""})["actions"].shape == (1, 1)
    with pytest.raises(RuntimeError, match="prompt changed within a connection"):
        good.infer({**obs, "prompt": "another task"})
