"""Our own orbax checkpoints: parameters only, or a full training state, restorable onto abstract shapes.

Params directory (what `uio2 train` leaves in RUN_DIR): `model.json` ({"config": name, "uio2_config":
exact config, "format": "uio2-params"}) + `params/` (orbax PyTree). A training-state directory adds
optimiser state, step, RNG key data and the data position under `state/` with `train_state.json`.
Restores take the target's shardings from the abstract tree, so the same code serves sharded runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from uio2_core.checkpoints.official_config import config_from_dict, config_to_dict
from uio2_core.config import UIO2Config
from uio2_core.model import UIO2Model, abstract_model
from uio2_errors import DamagedFileError

META_FILE = "model.json"
PARAMS_DIR = "params"
STATE_DIR = "state"
STATE_META = "train_state.json"


def is_ours(path: str | Path) -> bool:
    p = Path(path)
    return (p / META_FILE).is_file() and ((p / PARAMS_DIR).is_dir() or (p / STATE_DIR).is_dir())


def read_config(path: str | Path) -> UIO2Config:
    from uio2_core.config import get_config

    meta_file = Path(path) / META_FILE
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise DamagedFileError(f"{meta_file} is damaged (not valid JSON: {err})") from err
    if "uio2_config" in meta:
        return config_from_dict(meta["uio2_config"])
    return get_config(meta["config"])


def _write_meta(path: Path, cfg: UIO2Config, extra: dict[str, Any] | None = None) -> None:
    meta = {"config": cfg.name, "uio2_config": config_to_dict(cfg), "format": "uio2-params", **(extra or {})}
    (path / META_FILE).write_text(json.dumps(meta, indent=2))


def _restore_args(target: Any) -> Any:
    """Per-leaf restore args: each array lands with the sharding of its abstract target."""

    def one(x):
        sharding = getattr(x, "sharding", None) or jax.sharding.SingleDeviceSharding(jax.devices()[0])
        return ocp.ArrayRestoreArgs(sharding=sharding, dtype=x.dtype)

    return jax.tree.map(one, target)


def _restore(directory: Path, target: Any, *, partial: bool) -> Any:
    with ocp.PyTreeCheckpointer() as ckpt:
        args = ocp.args.PyTreeRestore(
            item=target, restore_args=_restore_args(target), partial_restore=partial
        )
        try:
            return ckpt.restore(directory.absolute(), args=args)
        except Exception as err:  # orbax / tensorstore raise bare Exceptions for truncated or corrupt data
            what = str(err).split(". See full", 1)[0]
            raise DamagedFileError(
                f"{directory} is damaged (truncated or corrupt checkpoint: {what}); save or copy it again"
            ) from err


def save_params(model: UIO2Model, path: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Write the model's parameters (all of them, VQ-GANs included when present)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save((out / PARAMS_DIR).absolute(), params, force=True)
    _write_meta(out, model.cfg, meta)


def abstract_params(model: UIO2Model) -> dict:
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def load_params(path: str | Path, cfg: UIO2Config | None = None, *, with_vqgan: bool = True) -> UIO2Model:
    """The saved model; with `with_vqgan=False` the VQ-GAN arrays are never read (partial restore)."""
    p = Path(path)
    if not (p / PARAMS_DIR).is_dir():
        raise FileNotFoundError(f"{p} holds no saved parameters ({PARAMS_DIR}/ expected)")
    model = abstract_model(cfg or read_config(p), with_vqgan=with_vqgan)
    state = nnx.state(model, nnx.Param)
    params = _restore(p / PARAMS_DIR, abstract_params(model), partial=not with_vqgan)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)
    return model


def save_train_state(
    path: str | Path,
    cfg: UIO2Config,
    state: dict[str, Any],
    *,
    data_position: int,
) -> None:
    """`state` = {"params", "opt_state", "step", "rng"} (pure pytrees, possibly sharded arrays)."""
    missing = {"params", "opt_state", "step", "rng"} - set(state)
    if missing:
        raise ValueError(f"training state lacks {sorted(missing)}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save((out / STATE_DIR).absolute(), state, force=True)
    _write_meta(out, cfg, {"format": "uio2-train-state"})
    (out / STATE_META).write_text(json.dumps({"data_position": int(data_position)}))


def restore_train_state(path: str | Path, abstract_state: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """(state restored onto `abstract_state`'s shapes, dtypes and shardings, data position)."""
    p = Path(path)
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    state = _restore(p / STATE_DIR, target, partial=False)
    return state, int(json.loads((p / STATE_META).read_text())["data_position"])
