"""benchmarks/learning.py end to end in its quick mode: collect -> train on L1 tasks -> evaluations during
training on held-out L1/L2/L3 seeds -> JSON and a PNG learning curve."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("learning_benchmark", ROOT / "benchmarks" / "learning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # compiles a train step, greedy decoding and the location metric: ~40-55 s of CPU
def test_quick_run_writes_a_learning_curve_per_level_and_task(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (the test extra) is not installed")
    assert _benchmark().main(["--out", str(tmp_path), "--quick"]) == 0
    result = json.loads((tmp_path / "learning.json").read_text())
    tasks = ["visual_manipulation", "rotate"]
    assert result["data"]["tasks"] == tasks and result["data"]["episodes"] == 4
    assert result["data"]["steps"] >= 4  # every oracle step of the 4 episodes
    # evaluated every 2 steps up to the 4-step cap, each time on all three levels, per task
    assert [p["step"] for p in result["points"]] == [2, 4]
    assert result["train"]["steps"] == 4 and result["train"]["seconds"] > 0
    for point in result["points"]:
        assert point["train_s"] > 0 and point["eval_s"] > 0 and point["loss"] > 0
        assert sorted(point["levels"]) == ["L1", "L2", "L3"]
        for level in point["levels"].values():
            assert level["episodes"] == 2 and sorted(level["per_task"]) == sorted(tasks)
            for r in [level, *level["per_task"].values()]:
                lo, hi = r["success_ci95"]
                assert 0.0 <= lo <= r["success_rate"] <= hi <= 1.0
        loc = point["location_error"]
        assert sorted(loc["per_task"]) == sorted(tasks)
        assert loc["all"]["location_examples"] >= 2 and loc["all"]["pick_m"] >= 0
    assert sorted(result["random"]) == ["L1", "L2", "L3"]
    assert result["final"]["L1"] == {
        k: result["points"][-1]["levels"]["L1"][k] for k in result["final"]["L1"]
    }
    assert result["reference"]["VIMA-200M_L1"]["success_rate"] == 0.815
    tables = (tmp_path / "learning_tables.md").read_text()
    assert tables.count("| visual_manipulation |") == 1 and "| 4 |" in tables
    png = (tmp_path / "learning_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000  # a drawn figure, not an empty file
    from PIL import Image

    with Image.open(tmp_path / "learning_curve.png") as image:
        assert image.size[0] > 300 and image.size[1] > 150


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "5"], "--steps is set by the benchmark itself"),
        (["--tasks", "fly"], "not L1 tasks"),
        (["--view", "side"], "a flag passed on to uio2 train"),
        (["--budget-min", "0"], "--budget-min must be > 0"),
    ],
)
def test_bad_flags_are_one_line_errors(tmp_path, capsys, argv, message):
    assert _benchmark().main(["--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "data").exists()  # nothing collected before the flags were checked


def test_a_missing_matplotlib_is_a_one_line_error_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` meets when not installed
    assert _benchmark().main(["--out", str(tmp_path), "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert "uio2-embodied[bench]" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "data").exists()


def test_filler_rows_of_a_padded_held_out_batch_hold_no_location_to_score():
    """The held-out batches are filled to one shape; the location metric must count only the real rows."""
    import numpy as np

    from training.location_metrics import vima_slots
    from uio2_core.vocab import LOCATION_START

    targets = np.zeros((3, 8), np.int32)
    targets[:, :6] = LOCATION_START + np.arange(6)  # one VIMA action's six location slots per row
    batch = {"text": np.arange(3 * 4).reshape(3, 4), "targets/text": targets}
    (full,) = _benchmark().padded([batch], rows=16)
    assert full["text"].shape == (16, 4) and full["targets/text"].shape == (16, 8)
    assert (full["text"][3:] == batch["text"][0]).all()  # filler rows repeat real inputs
    true_bins, _ = vima_slots(full, np.zeros((16, 8), np.int64))
    assert len(true_bins) == 3
