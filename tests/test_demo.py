"""The README's main job (quick mode): collect -> train ONE model on PointNav + tabletop -> eval per env
-> videos through the CLI, summary.json."""

import json
from pathlib import Path

from agent.cli import main


def test_demo_quick_trains_one_model_on_both_families_and_beats_random(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--quick"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert sorted(summary["envs"]) == ["pointnav", "tabletop/visual_manipulation"]
    for entry in summary["envs"].values():
        for name in ("random", "oracle", "trained"):
            assert 0.0 <= entry[name]["success_rate"] <= 1.0
        assert entry["oracle"]["success_rate"] == 1.0
    pointnav = summary["envs"]["pointnav"]
    assert "spl" in pointnav["trained"]
    # the quick PointNav goals sit on their starts ("stop" at once is right: learnable in 20 steps);
    # random stops before its first step forward only part of the time
    assert pointnav["trained"]["success_rate"] > pointnav["random"]["success_rate"]
    loc = summary["envs"]["tabletop/visual_manipulation"]["trained"]["location_error"]
    assert loc["location_examples"] == 8 and loc["pick_m"] >= 0 and loc["place_m"] >= 0
    trained = summary["envs"]["tabletop/visual_manipulation"]["trained"]
    assert 0.0 <= trained["grounding_accuracy"] <= 1.0  # the held-out grounding questions were asked
    assert all(Path(v).is_file() for v in summary["videos"].values()) and len(summary["videos"]) == 2
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 21))
    # the location tokens themselves are learnt, not only the grammar's fixed words: their cross-entropy
    # (tabletop batches; PointNav batches have none and report 0) falls over the 20 steps
    loc_ce = [m["text_location_ce"] for m in metrics if m["text_location_ce"] > 0]
    assert len(loc_ce) >= 4 and max(loc_ce[-2:]) < 0.9 * min(loc_ce[:2])
    assert (tmp_path / "dataset_visual_manipulation" / "meta" / "info.json").is_file()
