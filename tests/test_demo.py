"""The README's main job (quick mode): collect -> train -> eval -> video through the CLI, summary.json."""

import json
from pathlib import Path

from agent.cli import main


def test_demo_quick_writes_a_summary_per_policy(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--quick"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    for name in ("random", "oracle", "trained"):
        assert 0.0 <= summary[name]["success_rate"] <= 1.0 and "spl" in summary[name]
    assert summary["oracle"]["success_rate"] == 1.0
    assert Path(summary["video"]).is_file()
    assert (tmp_path / "run" / "metrics.jsonl").is_file()
    assert (tmp_path / "dataset" / "meta" / "info.json").is_file()
