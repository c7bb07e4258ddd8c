"""The showcase runs the whole tiny model end to end and writes a summary that says what happened."""

import json

import numpy as np

from agent.cli import main
from uio2_core.vocab import is_location_token, location_token_to_value, tiny_vocabulary


def test_showcase_writes_summary_with_a_parsed_action(tmp_path, capsys):
    assert main(["showcase", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["model"] == "tiny" and summary["params"] > 3_000_000
    action = summary["action"]
    assert action["text"].startswith("1: pick from (")
    # the numbers reported are the ones the decoded sentence says
    ids = tiny_vocabulary().encode(action["text"])
    said = [float(location_token_to_value(t)) for t in ids if is_location_token(t)]
    reported = [action[k][c] for k in ("pick", "place") for c in ("x", "y", "rotation")]
    assert said == reported
    for pose in (action["pick"], action["place"]):
        assert all(0.0 <= v <= 1.0 for v in pose.values())
    assert action["beam_log_prob"] >= action["greedy_log_prob"] - 1e-3
    assert summary["image"]["tokens"] == 64
    rgb = np.load(tmp_path / summary["image"]["file"])
    assert rgb.shape == (64, 64, 3) and rgb.min() >= 0.0 and rgb.max() <= 1.0
    timings = summary["timings"]
    assert timings["text_ms_per_token"] > 0
    assert timings["image_ms_per_token_with_guidance"] > 0 < timings["image_first_call_s_with_compilation"]
    assert "UIO2 tiny" in capsys.readouterr().out
