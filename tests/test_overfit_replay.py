"""End to end: record 2 oracle episodes, overfit a tiny UIO2 on them, and the policy replays them exactly."""

import json
from typing import ClassVar

import pytest

from agent.cli import main
from agent.envs import resolve_env
from agent.rollout import EpisodeSink, evaluate
from policies.registry import make_policy
from training.dataset import open_dataset

ENV = dict(width=32, height=32, max_episode_steps=10)


class _Actions(EpisodeSink):
    log: ClassVar[list] = []

    def start(self, *args) -> None:
        _Actions.log.append([])

    def step(self, obs, action, *args) -> None:
        _Actions.log[-1].append(int(action))


@pytest.mark.slow
def test_overfit_two_episodes_then_replay_them(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    opts = [f"--env.{k}={v}" for k, v in ENV.items()]
    assert (
        main(
            [
                "collect",
                "--env",
                "pointnav",
                "--policy",
                "oracle",
                "--episodes",
                "2",
                "--out",
                str(data),
                *opts,
            ]
        )
        == 0
    )
    train = ["train", "--data", str(data), "--steps", "150", "--batch-size", "8", "--warmup-steps", "10"]
    periodic = ["--eval-env", "pointnav", "--eval-every", "75", "--eval-episodes", "2", *opts]
    assert main([*train, "--learning-rate", "0.02", "--out", str(run), *periodic]) == 0
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [75, 150] and all("success_rate" in e for e in evals)
    losses = [line for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert json.loads(losses[-1])["loss"] < 0.05

    recorded = open_dataset(data)
    expected = [recorded.episode(i)["action"].reshape(-1).tolist() for i in range(2)]
    _Actions.log = []
    policy = make_policy("uio2", model=str(run))
    evaluate(
        resolve_env("pointnav", **ENV), policy, 2, 0, env_id="pointnav", sinks=[_Actions], show_progress=False
    )
    assert _Actions.log == expected
