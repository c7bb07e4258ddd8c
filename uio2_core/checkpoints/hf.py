"""Hugging Face checkpoint directories (`allenai/uio2-{large,xl,xxl}[-bfloat16]` layout).

A directory holds `config.json` and `pytorch_model.bin` (the release) or `model.safetensors`
(what we may also write). Import validates everything up front and streams tensors; export writes
the official key schema and config fields (plus our exact config) so the PyTorch code can load a
model fine-tuned here, and so our importer gives back identical parameters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import ml_dtypes
import numpy as np

from uio2_core.checkpoints.materialize import load_from_source, official_tensors
from uio2_core.checkpoints.official_config import (
    config_from_dict,
    config_from_official,
    config_to_dict,
    official_dict,
)
from uio2_core.checkpoints.schema import CheckpointError
from uio2_core.checkpoints.tensor_source import TensorSource
from uio2_core.config import UIO2Config
from uio2_core.model import UIO2Model

CONFIG_FILE = "config.json"
BIN_FILE = "pytorch_model.bin"
SAFETENSORS_FILE = "model.safetensors"
# Our exact config beside the official one (the port reads only config.json, so it must hold nothing
# else): what config.json cannot say, e.g. the perceiver GELU, dtypes, the config name.
OURS_FILE = "uio2_embodied.json"
# Parts the -bfloat16 releases keep in float32 (reference 1.3): the frozen ViT/AST and the VQ-GANs.
_FP32_PARTS = (".vision_transformer.", ".vqgan.")


def is_hf_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / CONFIG_FILE).is_file() and ((p / BIN_FILE).is_file() or (p / SAFETENSORS_FILE).is_file())


def read_config(path: str | Path) -> UIO2Config:
    """Our config for an HF directory: our sidecar when we wrote it, else from `config.json`."""
    ours = Path(path) / OURS_FILE
    if ours.is_file():
        try:
            return config_from_dict(json.loads(ours.read_text())["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{ours}: cannot build a UIO2 config ({e})") from e
    file = Path(path) / CONFIG_FILE
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise
    except ValueError as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from e
    try:
        return config_from_official(data, name=Path(path).name or "custom")
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{file}: cannot build a UIO2 config ({e})") from e


def open_weights(path: str | Path) -> TensorSource:
    """The weights file of an HF directory: safetensors when present (no torch needed), else .bin."""
    p = Path(path)
    if (p / SAFETENSORS_FILE).is_file():
        from uio2_core.checkpoints.safetensors_io import SafetensorsSource

        return SafetensorsSource(p / SAFETENSORS_FILE)
    if (p / BIN_FILE).is_file():
        from uio2_core.checkpoints.torch_io import TorchBinSource

        return TorchBinSource(p / BIN_FILE)
    raise FileNotFoundError(f"{p}: neither {SAFETENSORS_FILE} nor {BIN_FILE} found")


def import_hf(
    path: str | Path, cfg: UIO2Config | None = None, *, with_vqgan: bool = True, progress: bool = False
) -> UIO2Model:
    """Load an HF directory into our model (config from `config.json` unless `cfg` is given)."""
    cfg = cfg or read_config(path)
    return load_from_source(open_weights(path), cfg, with_vqgan=with_vqgan, progress=progress)


def _storage_dtype(dtype: str | None):
    if dtype is None:
        return None
    if dtype == "float32":
        return lambda spec: np.float32
    if dtype == "bfloat16":
        return lambda spec: (
            np.float32 if any(p in f".{spec.ours}" for p in _FP32_PARTS) else ml_dtypes.bfloat16
        )
    raise ValueError(f"unknown export dtype {dtype!r}; expected float32 or bfloat16")


def export_hf(
    model: UIO2Model,
    path: str | Path,
    *,
    fmt: Literal["bin", "safetensors"] = "bin",
    dtype: Literal["float32", "bfloat16"] | None = None,
) -> None:
    """Write `config.json` + the weights in the official schema into the (existing or new) directory.

    `dtype=None` keeps our parameter dtypes; "bfloat16" mirrors the -bfloat16 releases (core in
    bf16, ViT/AST/VQ-GANs in fp32). Tensors are materialised for the writer, so export needs about
    one extra copy of the weights.
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    dtype_for = _storage_dtype(dtype)
    tensors = dict(official_tensors(model, dtype_for))
    if fmt == "bin":
        from uio2_core.checkpoints.torch_io import save_bin

        save_bin(tensors, out / BIN_FILE)
    elif fmt == "safetensors":
        from uio2_core.checkpoints.safetensors_io import save_safetensors

        save_safetensors(tensors, out / SAFETENSORS_FILE, {"format": "pt"})
    else:
        raise ValueError(f"unknown weights format {fmt!r}; expected 'bin' or 'safetensors'")
    write_config(model.cfg, out)


def write_config(cfg: UIO2Config, path: str | Path) -> None:
    """`config.json` with exactly the port's keys, and our exact config in the sidecar."""
    out = Path(path)
    (out / CONFIG_FILE).write_text(json.dumps(official_dict(cfg), indent=2))
    (out / OURS_FILE).write_text(json.dumps({"config": config_to_dict(cfg)}, indent=2))
