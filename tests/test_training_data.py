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
