"""Our own parameter directories: `model.json` (config name) + `params/` (orbax), loadable by name.

This is what `uio2 train` leaves in RUN_DIR and what `--model RUN_DIR` loads. (Full training state
for resuming lives in the trainer's checkpoints; official formats in uio2_core.checkpoints.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from uio2_core.config import get_config
from uio2_core.model import UIO2Model, abstract_model


def save_params(model: UIO2Model, directory: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Write `directory/params` and `directory/model.json` ({"config": name, ...meta})."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save((directory / "params").absolute(), params, force=True)
    (directory / "model.json").write_text(json.dumps({"config": model.cfg.name, **(meta or {})}, indent=2))


def is_params_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / "model.json").is_file() and (path / "params").is_dir()


def load_params(directory: str | Path, *, with_vqgan: bool = False) -> UIO2Model:
    """The model saved by `save_params`; only the parameters present in the file are needed."""
    directory = Path(directory)
    if not is_params_dir(directory):
        raise FileNotFoundError(f"{directory} holds no saved model (model.json and params/ expected)")
    meta = json.loads((directory / "model.json").read_text())
    model = abstract_model(get_config(meta["config"]), with_vqgan=with_vqgan)
    state = nnx.state(model, nnx.Param)
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.to_pure_dict(state))
    with ocp.StandardCheckpointer() as ckpt:
        params = ckpt.restore((directory / "params").absolute(), target)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)
    return model
