"""`pytorch_model.bin` (a pickled state dict) read lazily and written, with torch imported on demand.

Reading uses `torch.load(weights_only=True, mmap=True)`: no code from the file runs, and tensors stay
on disk until touched, so only one of them is in memory at a time beyond the model being filled.
"""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np

from uio2_core.checkpoints.schema import CheckpointError
from uio2_core.checkpoints.tensor_source import drop_pages


def import_torch():
    """torch, or an error that says how to get the CPU build."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading or writing pytorch_model.bin needs torch: pip install -e .[torch] "
            "(the CPU wheel is enough)"
        ) from e
    return torch


def _np_dtype(torch_dtype) -> np.dtype:
    torch = import_torch()
    if torch_dtype == torch.bfloat16:
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(str(torch_dtype).removeprefix("torch."))


class TorchBinSource:
    """A `pytorch_model.bin` opened memory-mapped; `read` converts one tensor to numpy."""

    def __init__(self, path: str | Path):
        torch = import_torch()
        self.name = str(path)
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except FileNotFoundError:
            raise
        except Exception as e:  # truncated zip, legacy pickle, foreign objects
            raise CheckpointError(
                f"{path}: cannot read as a PyTorch state dict ({type(e).__name__}: {e})"
            ) from e
        if not isinstance(state, dict):
            raise CheckpointError(f"{path}: expected a state dict, found {type(state).__name__}")
        for key, value in state.items():
            if not isinstance(value, torch.Tensor):
                raise CheckpointError(f"{path}: key {key!r} holds a {type(value).__name__}, not a tensor")
        self._state = state

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self._state.items()}

    def dtype(self, key: str) -> np.dtype:
        return _np_dtype(self._state[key].dtype)

    def read(self, key: str) -> np.ndarray:
        torch = import_torch()
        t = self._state[key]
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return t.numpy()

    def release(self, key: str) -> None:
        t = self._state.pop(key, None)
        if t is not None and t.numel():
            drop_pages(t.data_ptr(), t.numel() * t.element_size())

    def close(self) -> None:
        self._state = {}


def _to_torch(x: np.ndarray):
    torch = import_torch()
    if not (x.flags.c_contiguous and x.flags.writeable):
        x = np.array(x, order="C")
    if x.dtype == np.dtype(ml_dtypes.bfloat16):
        return torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(x)


def save_bin(tensors: dict[str, np.ndarray], path: str | Path) -> None:
    """Write a state dict the official code loads with `torch.load` (contiguous tensors)."""
    torch = import_torch()
    torch.save({k: _to_torch(v) for k, v in tensors.items()}, str(path))
