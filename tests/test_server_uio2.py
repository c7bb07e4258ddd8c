"""The tiny UIO2 model through the policy server: same episodes as in-process, and real batching."""

import threading

import gymnasium as gym
import numpy as np
import pytest

from agent.envs import resolve_env
from agent.rollout import EpisodeSink, evaluate
from agent.server.backends import UIO2Backend, bucket_size
from agent.server.client import RemoteError, RemotePolicy, fetch_json
from agent.server.server import ServerConfig, ServerThread
from agent.server.warmup import WarmUp
from policies.base import TaskSpec
from policies.uio2_policy import UIO2Policy

POLICY_KWARGS = dict(max_frames=4, text_len=96)
POINTNAV = dict(width=32, height=32, max_episode_steps=6)
ENVS = [  # (env, kwargs, episodes, num_envs)
    ("pointnav", POINTNAV, 2, 1),
    ("tabletop/visual_manipulation", {}, 1, 1),
    ("pointnav", POINTNAV, 3, 2),  # a vectorised client: its rows form one server batch, as in-process
]


@pytest.fixture(scope="module")
def tiny():
    from policies.registry import load_uio2

    model, vocab, description = load_uio2("tiny")
    return model, vocab, description


@pytest.fixture(scope="module")
def server(tiny):
    model, vocab, description = tiny
    backend = UIO2Backend(model, vocab, description, **POLICY_KWARGS)
    with ServerThread(backend, ServerConfig(port=0, batch_window_ms=50)) as running:
        yield running


class _Recorder(EpisodeSink):
    def __init__(self, log: list):
        self.log = log

    def step(self, obs, action, reward, terminated, truncated, info, policy_info):
        self.log.append((_plain(action), policy_info.get("decoded_text"), policy_info.get("fallback")))


def _plain(action):
    if isinstance(action, dict):
        return {k: np.asarray(v).tolist() for k, v in action.items()}
    return int(action)


def _run(policy, env, kwargs, episodes, num_envs=1):
    log: list = []
    results = evaluate(resolve_env(env, **kwargs), policy, episodes, 3, env_id=env, num_envs=num_envs,
                       sinks=[lambda: _Recorder(log)], show_progress=False)  # fmt: skip
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in results], log


@pytest.mark.parametrize(("env", "kwargs", "episodes", "num_envs"), ENVS)
def test_results_through_the_server_equal_in_process_results(tiny, server, env, kwargs, episodes, num_envs):
    model, vocab, _ = tiny
    local = UIO2Policy(model, vocab, **POLICY_KWARGS)
    local_results, local_steps = _run(local, env, kwargs, episodes, num_envs)
    with RemotePolicy(server.url, timeout=120) as remote:
        remote_results, remote_steps = _run(remote, env, kwargs, episodes, num_envs)
    assert remote_results == local_results
    assert remote_steps == local_steps
    assert len(local_steps) >= episodes and all(text for _, text, _ in local_steps)


def test_concurrent_clients_are_batched_into_one_model_call(tiny):
    """Two clients in lockstep share batches. The window is long (10 s), so how loaded the machine is does
    not matter: a batch closes early as soon as both open sessions have a step waiting (or one closes)."""
    model, vocab, description = tiny
    backend = UIO2Backend(model, vocab, description, **POLICY_KWARGS)
    errors: list = []
    barrier = threading.Barrier(2)

    def client(url: str) -> None:
        try:
            with RemotePolicy(url, timeout=120) as remote:
                barrier.wait(timeout=60)
                evaluate(resolve_env("pointnav", **POINTNAV), remote, 1, 0, env_id="pointnav",
                         show_progress=False, max_steps=3)  # fmt: skip
        except Exception as err:  # reported below
            errors.append(err)

    with ServerThread(backend, ServerConfig(port=0, batch_window_ms=10_000)) as running:
        threads = [threading.Thread(target=client, args=(running.url,)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        metrics = fetch_json(running.url)
    assert not errors
    assert metrics["batch_size"]["max"] == 2, metrics["batch_size"]
    assert metrics["sessions"] == 0  # every client's session freed on close


VIMA_ACTIONS = gym.spaces.Dict(
    {name: gym.spaces.Box(-1.0, 1.0, (size,), np.float32) for name, size in
     (("pose0_position", 2), ("pose0_rotation", 4), ("pose1_position", 2), ("pose1_rotation", 4))}
)  # fmt: skip


def _hostile_tasks(space):
    """(task, observation, code, what the message names): the issue's five sessions whose declared spaces
    pass the generic checks but that the policy cannot act on, two tabletop ones, and a NaN goal under an
    honest declaration (refused per step). None of them may reach a batch."""
    goal, rgb = space["pointgoal_with_gps_compass"], space["rgb"]
    box = gym.spaces.Box
    pointnav = [  # (spaces, refused at reset with a message naming)
        ({"rgb": box(0.0, 1.0, (32, 32, 3), np.float32), "pointgoal_with_gps_compass": goal},
         r"observation_space\['rgb'\]: the UIO2 policy needs a uint8 image"),
        ({"rgb": box(0, 255, (0, 0, 3), np.uint8), "pointgoal_with_gps_compass": goal},
         r"observation_space\['rgb'\].*HxWx3"),
        ({"rgb": box(0, 255, (32, 32), np.uint8), "pointgoal_with_gps_compass": goal},
         r"observation_space\['rgb'\].*HxWx3"),
        ({"rgb": rgb}, r"observation_space\['pointgoal_with_gps_compass'\]: the UIO2 policy needs this key"),
        ({"rgb": rgb, "pointgoal_with_gps_compass": box(-1.0, 1.0, (0,), np.float32)},
         r"observation_space\['pointgoal_with_gps_compass'\]: expected a Box of shape \(2,\)"),
    ]  # fmt: skip
    out = []
    for spaces, message in pointnav:
        obs = {k: np.zeros(s.shape, s.dtype) for k, s in spaces.items()}
        task = TaskSpec("pointnav", gym.spaces.Dict(spaces), gym.spaces.Discrete(4))
        out.append((task, obs, "invalid_task", message))
    front = box(0, 255, (3, 16, 32), np.uint8)
    table = gym.spaces.Dict({"rgb": gym.spaces.Dict({"front": front})})
    image = {"rgb": {"front": np.zeros((3, 16, 32), np.uint8)}}
    # 20 prompt images for 4 slots: the 17 beyond the third are tiled into one grid of 5 x 4 cells of the
    # largest (1024 x 1024): 60 MiB of memory from 3 MiB of request, refused
    big = {"rgb": {"front": np.zeros((3, 1024, 1024), np.uint8)}}
    many = {f"p{i}": big if i == 19 else image for i in range(20)}
    for prompt, assets, message in [
        ("put {a} in {b}", {"a": image},
         r"prompt_assets\['b'\]\['rgb'\]\['front'\]: the prompt's \{b\} needs this image"),
        ("put {a} in {b}", {"a": image, "b": {"rgb": {"front": np.zeros((16, 32), np.uint8)}}},
         r"prompt_assets\['b'\]\['rgb'\]\['front'\]: expected a uint8 image"),
        (" ".join(f"{{p{i}}}" for i in range(20)), many,
         r"prompt_assets: 20 prompt images for 4 history slots would be tiled into one image of 62914560 B"),
    ]:  # fmt: skip
        task = TaskSpec("tabletop", table, VIMA_ACTIONS, prompt=prompt, prompt_assets=assets)
        out.append((task, {"rgb": {"front": image["rgb"]["front"]}}, "invalid_task", message))
    honest_space = gym.spaces.Dict({"rgb": rgb, "pointgoal_with_gps_compass": goal})
    nan_goal = {
        "rgb": np.zeros(rgb.shape, np.uint8),
        "pointgoal_with_gps_compass": np.array([np.nan, 0], np.float32),
    }
    out.append((TaskSpec("pointnav", honest_space, gym.spaces.Discrete(4)), nan_goal, "invalid_observation",
                r"\['pointgoal_with_gps_compass'\]: expected finite values"))  # fmt: skip
    return out


def test_a_hostile_session_is_refused_before_it_reaches_a_batch_and_never_fails_an_honest_one(server):
    """The attacker's sessions are refused at reset (or its NaN step before batching) with the field
    named, while an honest client steps in lockstep: the honest one gets every action, and no batch had
    to be retried row by row (nothing reached the model). On the base commit these failed whole batches."""
    env = resolve_env("pointnav", **POINTNAV)[0].make()
    obs, _ = env.reset(seed=0)
    honest_task = TaskSpec("pointnav", env.observation_space, env.action_space, seed=0)
    hostile = _hostile_tasks(env.observation_space)
    steps = len(hostile)
    barrier = threading.Barrier(2)
    honest_actions: list = []
    refused: list = []
    errors: list = []

    def honest() -> None:
        try:
            with RemotePolicy(server.url, timeout=120) as p:
                p.reset(honest_task)
                for _ in range(steps):
                    barrier.wait(timeout=120)
                    honest_actions.append(p.act(obs))
        except Exception as err:  # reported below
            errors.append(err)
            barrier.abort()

    def attacker() -> None:
        try:
            with RemotePolicy(server.url, timeout=120) as p:
                for task, bad, code, message in hostile:
                    barrier.wait(timeout=120)
                    with pytest.raises(RemoteError, match=message) as err:
                        p.reset(task)
                        p.act(bad)
                    refused.append(err.value.code == code)
        except BaseException as err:  # reported below (pytest.raises' failure is a BaseException)
            errors.append(err)
            barrier.abort()

    before = fetch_json(server.url)
    threads = [threading.Thread(target=honest), threading.Thread(target=attacker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    env.close()
    after = fetch_json(server.url)
    assert not errors, errors
    assert len(honest_actions) == steps and all(a in range(4) for a in honest_actions)
    assert refused == [True] * steps
    for name, counter in (("batches_retried_row_by_row", "counters"), ("policy_error", "errors")):
        assert after[counter].get(name, 0) == before[counter].get(name, 0), name


def test_prompts_over_the_text_window_are_refused_at_reset(server):
    env = resolve_env("pointnav", **POINTNAV)[0].make()
    words = " ".join(f"word{i}" for i in range(200))  # 1.5k characters, far more tokens than text_len 96
    with RemotePolicy(server.url, timeout=120) as p:
        with pytest.raises(
            RemoteError, match=r"prompt of \d+ tokens; this server's text window holds 95"
        ) as err:
            p.reset(TaskSpec("pointnav", env.observation_space, env.action_space, prompt=words))
        assert err.value.code == "invalid_task"
    env.close()


def test_a_warmed_up_server_pads_to_buckets_and_compiles_nothing_on_its_first_requests(tiny, caplog):
    """Warm-up runs buckets 1, 2 and 4 before the server binds (4 is compiled by no earlier test of this
    module, so the warm-up must compile); then a single session and a vectorised client's 3 rows (padded
    to 4) compile nothing: it fails if the warm-up skips a bucket or if batches are not padded."""
    model, vocab, description = tiny
    backend = UIO2Backend(model, vocab, description, **POLICY_KWARGS)
    plan = WarmUp.from_env("pointnav", 3, **POINTNAV)
    caplog.set_level("INFO", logger="agent.server.warmup")
    with ServerThread(backend, ServerConfig(port=0, warmup=plan)) as server:
        assert "warm-up: ran batch buckets [1, 2, 4] of pointnav" in caplog.text
        done = fetch_json(server.url)["warm_up"]
        assert done["buckets"] == [1, 2, 4] and done["env"] == "pointnav" and done["compilations"] > 0, done
        warm = backend.compilations()
        with RemotePolicy(server.url, timeout=120) as one, RemotePolicy(server.url, timeout=120) as three:
            one.reset(plan.task)
            assert one.act(plan.obs) in range(4)
            three.reset_batch([plan.task] * 3)
            for _ in range(2):
                assert all(a in range(4) for a in three.act_batch([plan.obs] * 3))
            assert three.last_info["server_batch_size"] == 3 and three.last_info["padded_batch_size"] == 4
        assert backend.compilations() == warm


def test_batches_are_padded_with_throwaway_copies_of_the_first_row(tiny):
    """A batch of 3 runs as 4; the padding row is a copy, so no session's history sees its step."""
    model, vocab, description = tiny
    backend = UIO2Backend(model, vocab, description, **POLICY_KWARGS)
    env = resolve_env("pointnav", **POINTNAV)[0].make()
    obs, _ = env.reset(seed=0)
    task = TaskSpec("pointnav", env.observation_space, env.action_space)
    env.close()
    assert [bucket_size(n) for n in (1, 2, 3, 4, 5, 8, 9)] == [1, 2, 4, 4, 8, 8, 16]
    keyed = [backend.new_row(task) for _ in range(4)]
    key = keyed[0][0]
    rows = [row for _, row in keyed]
    out = backend.act_rows(key, rows[:3], [obs] * 3, [{}] * 3)
    assert len(out) == 3 and out[0][1]["padded_batch_size"] == 4
    assert [r.history.step for r in rows] == [1, 1, 1, 0]  # the padding rows were copies
