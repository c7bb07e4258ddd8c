"""`convert(src, dst)`: between HF, T5X and our orbax format, atomically.

The output is built in a hidden sibling temp directory and renamed into place only when complete,
so a failure (missing or truncated input, a bad key, a full disk) leaves nothing at `dst`.
Direction by default: HF or T5X -> ours; ours -> HF (`pytorch_model.bin`). `to=` overrides it.
Whatever the source holds is converted; a source without VQ-GANs gives an output without them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from uio2_core.checkpoints.formats import detect_format

Target = Literal["ours", "hf", "hf-safetensors"]


def _write(model, out: Path, to: Target) -> None:
    if to == "ours":
        from uio2_core.checkpoints.ours import save_params

        save_params(model, out)
    else:
        from uio2_core.checkpoints.hf import export_hf

        export_hf(model, out, fmt="safetensors" if to == "hf-safetensors" else "bin")


def convert(src: str, dst: str, *, progress: bool = True, to: Target | None = None) -> None:
    """Convert the checkpoint at `src` into a new directory `dst` (which must not exist)."""
    from tqdm import tqdm

    from uio2_core.checkpoints.formats import has_vqgan, load_model

    src_path, dst_path = Path(src), Path(dst)
    if dst_path.exists():
        raise FileExistsError(f"{dst_path} already exists; refusing to overwrite")
    fmt = detect_format(src_path)
    to = to or ("hf" if fmt == "ours" else "ours")
    if to not in ("ours", "hf", "hf-safetensors"):
        raise ValueError(f"unknown target format {to!r}")
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst_path.name}.tmp-", dir=dst_path.parent))
    try:
        with tqdm(total=2, desc=f"convert {fmt} -> {to}", unit="stage", disable=not progress) as bar:
            # Everything the source holds: a set_modalities-pruned source converts without VQ-GANs.
            model = load_model(src_path, with_vqgan=has_vqgan(src_path), progress=progress)
            bar.update(1)
            _write(model, tmp / "out", to)
            bar.update(1)
        os.rename(tmp / "out", dst_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
