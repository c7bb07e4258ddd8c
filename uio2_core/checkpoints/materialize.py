"""Fill an abstract model from a tensor source and read a model back out, both in the official layout.

Shared by every official format (HF .bin / safetensors, T5X): validation of names, shapes and
dtypes happens on metadata before any tensor is read, so a bad file fails fast and cheaply; then
tensors are converted one by one and released, and parameters the model does not hold (pruned
VQ-GANs) are never read.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np
from flax import nnx

from uio2_core.checkpoints.schema import (
    CheckpointError,
    KeySpec,
    build_schema,
    by_official_key,
    check_dtype,
    check_keys,
    from_official,
    schema_from_model,
    to_official,
)
from uio2_core.checkpoints.tensor_source import TensorSource
from uio2_core.config import UIO2Config
from uio2_core.model import UIO2Model, abstract_model


def validate(
    source: TensorSource, cfg: UIO2Config, *, with_vqgan: bool, full: list[KeySpec] | None = None
) -> list[KeySpec]:
    """Check `source` against the full schema (`full`, when the caller has it); return the specs of
    what the pruned model needs."""
    known = by_official_key(full if full is not None else build_schema(cfg, with_vqgan=True))
    # Pruned: VQ-GAN keys may be present (checked, never read) or absent (a set_modalities file).
    needed = [s for s in known.values() if with_vqgan or not s.is_vqgan]
    found = source.shapes()
    check_keys(found, needed, known, source=source.name)
    for key in found:
        check_dtype(key, source.dtype(key), source=source.name)
    return needed


def load_from_source(
    source: TensorSource, cfg: UIO2Config, *, with_vqgan: bool = True, progress: bool = False
) -> UIO2Model:
    """A real model for `cfg` with every parameter taken from `source` (see the module docstring)."""
    from tqdm import tqdm

    model = abstract_model(cfg, with_vqgan=with_vqgan)  # shapes only: nothing read or allocated yet
    specs = schema_from_model(model)
    validate(source, cfg, with_vqgan=with_vqgan, full=specs if with_vqgan else None)
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    filled = []
    for spec in tqdm(specs, desc="import", unit="tensor", disable=not progress):
        raw = source.read(spec.official)
        value = np.array(from_official(raw, spec.transform), dtype=spec.dtype, order="C", copy=True)
        del raw
        source.release(spec.official)
        if value.shape != spec.shape:  # guarded by validate; kept as a last line of defence
            raise CheckpointError(
                f"{source.name}: {spec.official!r} converts to {value.shape}, not {spec.shape}"
            )
        filled.append((spec.path, flat[spec.path].replace(jax.device_put(value))))
        del value
    source.close()
    nnx.update(model, nnx.from_flat_state(filled))
    return model


def official_tensors(model: UIO2Model, dtype_for=None) -> Iterator[tuple[str, np.ndarray]]:
    """(official key, array in the official layout) for every parameter, in schema order.

    `dtype_for(spec)` may pick a storage dtype per key (e.g. bfloat16 for the core only).
    """
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    for spec in schema_from_model(model):
        x = to_official(np.asarray(flat[spec.path].get_value()), spec.transform)
        dtype = dtype_for(spec) if dtype_for is not None else None
        yield spec.official, np.ascontiguousarray(x, dtype=dtype)
