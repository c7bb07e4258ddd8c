"""`convert`: HF <-> ours round trip, and clean failures that leave nothing behind."""

from __future__ import annotations

import numpy as np
import pytest

from uio2_core.checkpoints import hf
from uio2_core.checkpoints.convert import convert
from uio2_core.checkpoints.safetensors_io import save_safetensors
from uio2_core.checkpoints.schema import CheckpointError
from uio2_core.checkpoints.synthetic import random_state_dict
from uio2_core.config import get_config


@pytest.fixture(scope="module")
def state_dict():
    return random_state_dict(get_config("tiny"), seed=3)


def _hf_dir(path, state_dict, fmt="safetensors"):
    path.mkdir()
    if fmt == "safetensors":
        save_safetensors(state_dict, path / hf.SAFETENSORS_FILE)
    else:
        from uio2_core.checkpoints.torch_io import save_bin

        save_bin(state_dict, path / hf.BIN_FILE)
    hf.write_config(get_config("tiny"), path)
    return path


def _leftovers(parent) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_hf_to_ours_to_hf_is_the_identity(tmp_path, state_dict):
    pytest.importorskip("torch", reason="pytorch_model.bin needs torch (pip install -e .[torch])")
    src = _hf_dir(tmp_path / "hf", state_dict, fmt="bin")
    convert(str(src), str(tmp_path / "ours"), progress=False)
    convert(str(tmp_path / "ours"), str(tmp_path / "back"), progress=False)
    source = hf.open_weights(tmp_path / "back")
    assert source.shapes().keys() == state_dict.keys()
    for k, v in state_dict.items():
        np.testing.assert_array_equal(np.asarray(source.read(k)), v, err_msg=k)
    assert hf.read_config(tmp_path / "back") == get_config("tiny")
    assert _leftovers(tmp_path) == []


def test_missing_source_fails_and_writes_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        convert(str(tmp_path / "nope"), str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_truncated_bin_fails_cleanly(tmp_path, state_dict):
    pytest.importorskip("torch", reason="pytorch_model.bin needs torch (pip install -e .[torch])")
    src = _hf_dir(tmp_path / "hf", state_dict, fmt="bin")
    data = (src / hf.BIN_FILE).read_bytes()
    (src / hf.BIN_FILE).write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match="cannot read"):
        convert(str(src), str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_truncated_safetensors_fails_cleanly(tmp_path, state_dict):
    src = _hf_dir(tmp_path / "hf", state_dict)
    data = (src / hf.SAFETENSORS_FILE).read_bytes()
    (src / hf.SAFETENSORS_FILE).write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="truncated"):
        convert(str(src), str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_failure_while_writing_removes_the_partial_output(tmp_path, state_dict, monkeypatch):
    import uio2_core.checkpoints.ours as ours

    src = _hf_dir(tmp_path / "hf", state_dict)

    def broken(model, path, meta=None):
        (path / "params").mkdir(parents=True)
        (path / "params" / "half").write_text("x")
        raise OSError("disk full")

    monkeypatch.setattr(ours, "save_params", broken)
    with pytest.raises(OSError, match="disk full"):
        convert(str(src), str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_refuses_to_overwrite(tmp_path, state_dict):
    src = _hf_dir(tmp_path / "hf", state_dict)
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        convert(str(src), str(tmp_path / "out"), progress=False)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a checkpoint directory"):
        convert(str(tmp_path / "empty"), str(tmp_path / "out"), progress=False)


def test_pruned_source_converts_without_vqgan_both_ways(tmp_path, state_dict):
    from uio2_core.checkpoints.formats import has_vqgan

    pruned = {k: v for k, v in state_dict.items() if ".vqgan." not in k}
    src = _hf_dir(tmp_path / "hf", pruned)
    assert not has_vqgan(src)
    convert(str(src), str(tmp_path / "ours"), progress=False)
    assert not has_vqgan(tmp_path / "ours")
    convert(str(tmp_path / "ours"), str(tmp_path / "back"), progress=False, to="hf-safetensors")
    source = hf.open_weights(tmp_path / "back")
    assert source.shapes().keys() == pruned.keys()
    full = _hf_dir(tmp_path / "full", state_dict)
    assert has_vqgan(full)
