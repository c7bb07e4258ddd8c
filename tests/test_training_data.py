"""Recorded episodes -> training examples (policy inputs, codec targets); bad files are named."""

import numpy as np
import pytest

from agent.cli import main
from policies.codecs import DiscreteActionCodec
from training.data import DatasetError, ExampleBuilder, TrainingData
from uio2_core.vocab import tiny_vocabulary


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "pointnav"
    argv = ["collect", "--env", "pointnav", "--policy", "oracle", "--episodes", "3", "--seed", "0"]
    assert (
        main([*argv, "--out", str(root), "--env.width=32", "--env.height=32", "--env.max_episode_steps=12"])
        == 0
    )
    return root


def test_examples_are_the_policys_inputs_and_the_codecs_targets(dataset, tiny_cfg):
    vocab = tiny_vocabulary()
    data = TrainingData(
        [str(dataset)], ExampleBuilder(tiny_cfg, vocab, text_len=96, target_len=8), batch_size=4
    )
    batch = data.batch_at(0)
    assert batch["text"].shape == (4, 96) and batch["image"].shape == (4, 64, 64, 3)
    assert batch["image_history"].shape == (4, 4, 48, 48, 3)
    codec = DiscreteActionCodec(vocab)
    for row in batch["targets/text"]:
        assert codec.decode(row).ok  # every target is a sentence the policy's grammar accepts
    np.testing.assert_array_equal(data.batch_at(3)["targets/text"], data.batch_at(3)["targets/text"])
    assert not np.array_equal(data.batch_at(0)["text"], data.batch_at(1)["text"])


def test_a_missing_episode_file_is_named_or_skipped(dataset, tiny_cfg, tmp_path, caplog):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    victim = next((broken / "data").rglob("file-001.parquet"))
    victim.write_bytes(b"not parquet")
    builder = ExampleBuilder(tiny_cfg, tiny_vocabulary(), text_len=96, target_len=8)
    with pytest.raises(DatasetError, match=r"episode 1 cannot be read"):
        TrainingData([str(broken)], builder, batch_size=2)
    data = TrainingData([str(broken)], builder, batch_size=2, skip_bad_episodes=True)
    assert "skipping episode 1" in caplog.text
    assert {e for e, _ in data.steps[0]} == {0, 2}


@pytest.fixture(scope="module")
def tabletop(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "tabletop"
    argv = ["collect", "--env", "tabletop/rotate", "--policy", "oracle", "--episodes", "2", "--seed", "0"]
    assert main([*argv, "--out", str(root)]) == 0
    return root


@pytest.fixture(scope="module")
def audio_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "pointnav-audio"
    argv = ["collect", "--env", "pointnav-audio", "--policy", "oracle", "--episodes", "1", "--seed", "0"]
    assert main([*argv, "--out", str(root), "--env.width=32", "--env.height=32",
                 "--env.max_episode_steps=6"]) == 0  # fmt: skip
    return root


def _reference_rows(data: TrainingData, k: int) -> list[tuple[dict, np.ndarray]]:
    """Every step of dataset k through the per-episode reference builder (the policy's replay)."""
    d, rows = data.datasets[k], []
    for e in sorted({e for e, _ in data.steps[k]}):
        ex = data.builder.episode(d.episode(e), d.episode_extra(e), data.families[k])
        rows += [({key: v[t] for key, v in ex.inputs.items()}, ex.targets[t]) for t in range(len(ex.targets))]
    return rows


@pytest.mark.parametrize("text_len", [128, 40])  # 40: PointNav's prompts lose history steps, VIMA's are cut
def test_indexed_steps_equal_the_reference_replay(dataset, tabletop, tiny_cfg, text_len, caplog):
    """Each (episode, step) of both families, mixed in one TrainingData, gives exactly the arrays of the
    policy's step-by-step replay (ExampleBuilder.episode), also when prompts are over text_len."""
    builder = ExampleBuilder(tiny_cfg, tiny_vocabulary(), text_len=text_len, target_len=32)
    data = TrainingData([str(dataset), str(tabletop)], builder, batch_size=4)
    for k in range(2):
        reference = _reference_rows(data, k)
        assert len(reference) == len(data.steps[k]) > 0
        for i, (inputs, targets) in enumerate(reference):
            arrays, got_targets = data.example(k, i)
            assert sorted(arrays) == sorted(inputs)
            for key in inputs:
                np.testing.assert_array_equal(arrays[key], inputs[key], err_msg=f"dataset {k} step {i} {key}")
            np.testing.assert_array_equal(got_targets, targets)
    report = data.text_report()
    if text_len == 40:
        assert report[0]["shortened"] > 0 and report[1]["truncated"] > 0
        assert "are over text_len 40" in caplog.text
    else:
        assert all(r["shortened"] == r["truncated"] == 0 for r in report)
    batch = data.batch_at(0)
    assert batch["text"].shape == (4, text_len) and batch["targets/text"].shape == (4, 32)
    np.testing.assert_array_equal(data.batch_at(0)["image"], batch["image"])  # from the frame cache


def test_audio_steps_equal_the_reference_replay_and_do_not_mix_with_silent_ones(
    audio_dataset, dataset, tiny_cfg
):
    builder = ExampleBuilder(tiny_cfg, tiny_vocabulary(), text_len=128, target_len=8)
    data = TrainingData([str(audio_dataset)], builder, batch_size=2)
    for i, (inputs, targets) in enumerate(_reference_rows(data, 0)):
        arrays, got_targets = data.example(0, i)
        assert sorted(arrays) == sorted(inputs) and "audio_history" in arrays
        for key in inputs:
            np.testing.assert_array_equal(arrays[key], inputs[key], err_msg=f"step {i} {key}")
        np.testing.assert_array_equal(got_targets, targets)
    with pytest.raises(DatasetError, match="all with audio or all without"):
        TrainingData([str(audio_dataset), str(dataset)], builder, batch_size=2)
