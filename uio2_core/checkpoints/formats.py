"""Which checkpoint format a path holds, and `load_model`: any format -> our model, pruned on request.

`with_vqgan=False` is UIO2's `set_modalities` for agents that emit text only: the VQ-GAN tensors are
skipped by name and never read from disk (HF, T5X) or restored (orbax partial restore).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from uio2_core.config import UIO2Config
from uio2_core.model import UIO2Model

Format = Literal["hf", "t5x", "ours"]


def detect_format(path: str | Path) -> Format:
    """HF: config.json + pytorch_model.bin | model.safetensors; T5X: a msgpack `checkpoint`; ours: orbax."""
    from uio2_core.checkpoints import hf, ours, t5x

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such checkpoint")
    if hf.is_hf_dir(p):
        return "hf"
    if t5x.is_t5x_dir(p):
        return "t5x"
    if ours.is_ours(p):
        return "ours"
    raise ValueError(
        f"{p}: not a checkpoint directory (expected config.json + {hf.BIN_FILE} or {hf.SAFETENSORS_FILE}, "
        "a T5X `checkpoint` file, or our model.json + params/)"
    )


def has_vqgan(path: str | Path) -> bool:
    """Whether the checkpoint holds VQ-GAN weights (read from metadata only; T5X: assumed yes)."""
    fmt = detect_format(path)
    if fmt == "hf":
        from uio2_core.checkpoints.hf import open_weights

        source = open_weights(path)
        try:
            return any(".vqgan." in k for k in source.shapes())
        finally:
            source.close()
    if fmt == "ours":
        import orbax.checkpoint as ocp

        from uio2_core.checkpoints.ours import PARAMS_DIR

        with ocp.StandardCheckpointer() as ckpt:
            meta = ckpt.metadata((Path(path) / PARAMS_DIR).absolute())
        meta = getattr(meta, "item_metadata", meta)  # StepMetadata (newer orbax) -> TreeMetadata
        tree = getattr(meta, "tree", meta)
        return any(tree.get("target_embedders", {}).get(m, {}).get("vqgan") for m in ("image", "audio"))
    return True


def load_model(
    path: str | Path, cfg: UIO2Config | None = None, *, with_vqgan: bool = False, progress: bool = False
) -> UIO2Model:
    """Our model from a checkpoint of any supported format."""
    fmt = detect_format(path)
    if fmt == "hf":
        from uio2_core.checkpoints.hf import import_hf

        return import_hf(path, cfg, with_vqgan=with_vqgan, progress=progress)
    if fmt == "t5x":
        from uio2_core.checkpoints.t5x import import_t5x

        return import_t5x(path, cfg, with_vqgan=with_vqgan, progress=progress)
    from uio2_core.checkpoints.ours import load_params

    return load_params(path, cfg, with_vqgan=with_vqgan)
