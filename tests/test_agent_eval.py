"""The runner: oracle reproduction, batching invariance, UIO2 episodes on both env families, results.json."""

import json

import gymnasium as gym
import numpy as np
import pytest

from agent.cli import main
from agent.envs import resolve_env
from agent.rollout import EpisodeSink, evaluate
from envs.pointnav.env import PointNavEnv
from policies.baselines import OraclePolicy, RandomPolicy
from policies.codecs import POINTNAV_ACTION_WORDS, VimaActionCodec
from policies.uio2_policy import UIO2Policy

SMALL = dict(width=32, height=32, max_episode_steps=60)


def test_oracle_through_the_runner_reproduces_the_env_oracle():
    direct = []
    for seed in range(3):
        env = PointNavEnv(**SMALL)
        env.reset(seed=seed)
        steps = 0
        while True:
            _, _, term, trunc, info = env.step(env.oracle_action())
            steps += 1
            if term or trunc:
                break
        direct.append((bool(info["success"]), steps))
        env.close()
    results = evaluate(
        resolve_env("pointnav", **SMALL), OraclePolicy(), 3, 0, env_id="pointnav", show_progress=False
    )
    assert [(r["success"], r["steps"]) for r in results] == direct
    assert [r["seed"] for r in results] == [0, 1, 2]


def test_results_do_not_depend_on_batching():
    entries = resolve_env("pointnav", **SMALL)
    one = evaluate(entries, RandomPolicy(7), 4, 10, env_id="pointnav", show_progress=False)
    three = evaluate(entries, RandomPolicy(7), 4, 10, env_id="pointnav", num_envs=3, show_progress=False)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_s"} for r in rs]  # noqa: E731
    assert strip(one) == strip(three)


class _SpaceChecker(gym.Wrapper):
    """Fails the test if any action leaves the action space."""

    def step(self, action):
        assert self.action_space.contains(action), action
        return super().step(action)


@pytest.fixture(scope="module")
def tiny_policy():
    from policies.registry import load_uio2

    model, vocab, _ = load_uio2("tiny")
    return UIO2Policy(model, vocab, max_frames=4, text_len=96)


@pytest.mark.parametrize(
    ("env", "kwargs"),
    [
        ("pointnav", dict(width=32, height=32, max_episode_steps=6)),
        ("pointnav-audio", dict(width=32, height=32, max_episode_steps=4)),
        ("tabletop/visual_manipulation", {}),
    ],
)
def test_tiny_uio2_policy_runs_whole_episodes_with_valid_actions(tiny_policy, env, kwargs):
    entries = [type(e)(e.task, lambda e=e: _SpaceChecker(e.make())) for e in resolve_env(env, **kwargs)]
    steps: list[tuple] = []

    class Record(EpisodeSink):
        def step(self, obs, action, reward, terminated, truncated, info, policy_info) -> None:
            steps.append((action, policy_info["decoded_text"]))

    run = dict(env_id=env, num_envs=2, show_progress=False, sinks=[Record])
    results = evaluate(entries, tiny_policy, 2, 0, **run)
    assert len(results) == 2
    for r in results:
        assert r["steps"] >= 1 and r["failure_reason"] in (None, "step_limit",
               "stopped_short", "task_failure", "terminated")  # fmt: skip
    assert len(steps) == sum(r["steps"] for r in results)
    vocab = tiny_policy.vocab
    for action, text in steps:  # the env received exactly the action the decoded sentence says
        if isinstance(action, dict):
            step = int(text.split(":", 1)[0]) - 1
            decoded = VimaActionCodec(vocab).decode(vocab.encode(text), step)
            assert decoded.ok, text
            for key in ("pose0_position", "pose1_position"):
                np.testing.assert_allclose(action[key], decoded.action[key], atol=1e-6)
        else:
            assert POINTNAV_ACTION_WORDS[int(action)] == text


def test_eval_command_writes_the_documented_results(tmp_path):
    out = tmp_path / "run"
    argv = ["eval", "--env", "pointnav", "--policy", "random", "--episodes", "3", "--seed", "5"]
    rc = main([*argv, "--out", str(out), "--env.width=32", "--env.height", "32", "--env.max_episode_steps=9"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert {"env", "policy", "model", "seed", "episodes", "summary"} <= set(results)
    assert results["env"] == "pointnav" and results["seed"] == 5
    assert [e["seed"] for e in results["episodes"]] == [5, 6, 7]
    for e in results["episodes"]:
        assert {"seed", "success", "steps", "spl", "soft_spl"} <= set(e)
    s = results["summary"]
    assert s["episodes"] == 3 and 0.0 <= s["success_rate"] <= 1.0 and "spl" in s and "soft_spl" in s
    assert s["success_ci95"][0] <= s["success_rate"] <= s["success_ci95"][1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "nowhere"], "unknown env 'nowhere'"),
        (["--env", "pointnav", "--policy", "greedy"], "unknown policy 'greedy'"),
        (["--env", "pointnav", "--level", "L2"], "--level applies to tabletop"),
        (["--env", "pointnav", "--bogus.x=1"], "unknown option group"),
    ],
)
def test_eval_errors_are_clear(tmp_path, capsys, argv, message):
    base = {"--policy": "random", "--episodes": "1", "--out": str(tmp_path)}
    args = ["eval", *argv]
    for k, v in base.items():
        if k not in argv:
            args += [k, v]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_wilson_interval_is_sane():
    from agent.metrics import wilson_interval

    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.2 < hi < 0.35
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.404, abs=0.002) and hi == pytest.approx(0.596, abs=0.002)
    assert np.isclose(sum(wilson_interval(7, 7)), 1.0 + wilson_interval(7, 7)[0])
