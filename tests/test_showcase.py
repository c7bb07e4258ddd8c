"""The showcase runs the whole tiny model end to end and writes a summary that says what happened."""

import json

import numpy as np

from agent.cli import main


def test_showcase_writes_summary_with_a_parsed_action(tmp_path, capsys):
    assert main(["showcase", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["model"] == "tiny" and summary["params"] > 3_000_000
    action = summary["action"]
    assert action["parses"] and action["text"].startswith("1: pick from (")
    for pose in (action["pick"], action["place"]):
        assert all(0.0 <= v <= 1.0 for v in pose.values())
    assert action["beam_log_prob"] >= action["greedy_log_prob"] - 1e-3
    assert summary["image"]["tokens"] == 64
    rgb = np.load(tmp_path / summary["image"]["file"])
    assert rgb.shape == (64, 64, 3) and rgb.min() >= 0.0 and rgb.max() <= 1.0
    assert summary["timings"]["text_ms_per_token"] > 0
    assert "UIO2 tiny" in capsys.readouterr().out
