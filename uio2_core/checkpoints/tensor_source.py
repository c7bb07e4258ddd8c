"""A lazily read set of named tensors (one checkpoint file), and the page-dropping that keeps imports lean.

Readers hand out one tensor at a time in the file's own layout, so an import holds the converted
model plus one tensor in flight; pages of the memory-mapped file that were read are given back to
the kernel right after each tensor is converted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
from typing import Protocol

import numpy as np

_MADV_DONTNEED = 4


class TensorSource(Protocol):
    """Named tensors of one checkpoint (official keys)."""

    name: str

    def shapes(self) -> dict[str, tuple[int, ...]]: ...

    def dtype(self, key: str) -> np.dtype: ...

    def read(self, key: str) -> np.ndarray: ...

    def release(self, key: str) -> None: ...

    def close(self) -> None: ...


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def drop_pages(address: int, nbytes: int) -> None:
    """Best effort: tell the kernel we are done with a read-only, privately mapped range.

    Clean file-backed pages then leave the resident set (they are re-read from disk if touched
    again), so peak memory stays near one copy of the weights. Never used on written memory.
    """
    if _LIBC is None or nbytes <= 0:
        return
    page = mmap.PAGESIZE
    start = (address + page - 1) // page * page
    end = (address + nbytes) // page * page
    if end > start:
        _LIBC.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED)
