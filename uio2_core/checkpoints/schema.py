"""Our parameter paths <-> the official PyTorch state-dict keys, with the per-key layout transform.

The mapping is derived from the model itself (its abstract parameter tree), so it follows any
config: attribute names already mirror the official schema (reference/uio2-architecture.md 1.6,
1.7), and only leaf names and layouts differ:

- `kernel` of a linear -> `weight`, transposed ([in, out] -> [out, in]);
- `kernel` of an image VQ-GAN conv -> `weight`, HWIO -> OIHW;
- the audio VQ-GAN `conv_transpose.kernel` -> `weight`, transpose (2, 3, 0, 1) + flip of both
  spatial axes (the Flax/T5X layout is the spatially flipped PyTorch one);
- nnx.Embed `embedding` -> `weight` (token tables and the VQ-GAN codebooks);
- LayerNorm / GroupNorm `scale` -> `weight` (ViT, AST, VQ-GANs); the T5 RMSNorms keep `scale`;
- ViT / AST attention `attn.{query,key,value}.{kernel,bias}` -> `attn.{q}_in_proj_{weight,bias}`.

The ViT and AST live once, under `input_embedders.{image,audio}`, in both trees, so it is 1:1.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from flax import nnx

from uio2_core.config import UIO2Config

Transform = Literal["identity", "linear", "conv", "conv_transpose"]
VQGAN_PREFIXES: tuple[str, ...] = ("target_embedders.image.vqgan.", "target_embedders.audio.vqgan.")
_NORM_OWNERS = (".vision_transformer.", ".vqgan.")  # LayerNorm / GroupNorm live only in these parts
_VIT_QKV = ("query", "key", "value")


class CheckpointError(ValueError):
    """A checkpoint does not match the model: names the first offending key and why."""


@dataclass(frozen=True)
class KeySpec:
    """One parameter: our path, the official key, its shapes on both sides and the layout transform."""

    path: tuple[str | int, ...]  # our nnx path (List indices are ints)
    ours: str  # dotted form of `path`
    official: str
    shape: tuple[int, ...]  # our shape
    official_shape: tuple[int, ...]
    dtype: np.dtype  # our parameter dtype
    transform: Transform

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def is_vqgan(self) -> bool:
        return self.ours.startswith(VQGAN_PREFIXES)


def official_key(ours: str, ndim: int) -> tuple[str, Transform]:
    """Official key and transform for our dotted path (`ndim` is our array's rank)."""
    parts = ours.split(".")
    leaf, parent = parts[-1], parts[-2] if len(parts) > 1 else ""
    in_vit = ".vision_transformer." in ours
    if in_vit and len(parts) >= 3 and parts[-3] == "attn" and parent in _VIT_QKV:
        suffix = "weight" if leaf == "kernel" else "bias"
        return ".".join(
            [*parts[:-2], f"{parent}_in_proj_{suffix}"]
        ), "linear" if leaf == "kernel" else "identity"
    if leaf == "kernel":
        if parent == "conv_transpose":
            transform: Transform = "conv_transpose"
        else:
            transform = "conv" if ndim == 4 else "linear"
        return ".".join([*parts[:-1], "weight"]), transform
    if leaf == "embedding" and parent in (
        "embedding",
        "text_token_embedder",
        "image_token_embedder",
        "audio_token_embedder",
    ):
        return ".".join([*parts[:-1], "weight"]), "identity"
    if leaf == "scale" and any(o in f".{ours}" for o in _NORM_OWNERS):
        return ".".join([*parts[:-1], "weight"]), "identity"
    return ours, "identity"


def to_official(x: np.ndarray, transform: Transform) -> np.ndarray:
    """Our layout -> the official PyTorch layout (a view where possible)."""
    if transform == "linear":
        return x.T
    if transform == "conv":
        return x.transpose(3, 2, 0, 1)
    if transform == "conv_transpose":
        return np.flip(x.transpose(2, 3, 0, 1), axis=(2, 3))
    return x


def from_official(x: np.ndarray, transform: Transform) -> np.ndarray:
    """The official PyTorch layout -> ours (inverse of `to_official`)."""
    if transform == "linear":
        return x.T
    if transform == "conv":
        return x.transpose(2, 3, 1, 0)
    if transform == "conv_transpose":
        return np.flip(x, axis=(2, 3)).transpose(2, 3, 0, 1)
    return x


def _official_shape(shape: tuple[int, ...], transform: Transform) -> tuple[int, ...]:
    return tuple(to_official(np.empty(shape, np.bool_), transform).shape)


def schema_from_model(model: nnx.Module) -> list[KeySpec]:
    """Every parameter of `model` (abstract or real) with its official key, in tree order."""
    specs = []
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        ours = ".".join(str(p) for p in path)
        shape = tuple(var.shape)
        key, transform = official_key(ours, len(shape))
        specs.append(
            KeySpec(
                tuple(path),
                ours,
                key,
                shape,
                _official_shape(shape, transform),
                np.dtype(var.dtype),
                transform,
            )
        )
    return specs


def build_schema(cfg: UIO2Config, *, with_vqgan: bool = True) -> list[KeySpec]:
    """The schema for a config, from abstract shapes (nothing is allocated; cached per config)."""
    return list(_cached_schema(cfg, with_vqgan))


@functools.lru_cache(maxsize=8)
def _cached_schema(cfg: UIO2Config, with_vqgan: bool) -> tuple[KeySpec, ...]:
    from uio2_core.model import abstract_model

    return tuple(schema_from_model(abstract_model(cfg, with_vqgan=with_vqgan)))


def by_official_key(specs: list[KeySpec]) -> dict[str, KeySpec]:
    out: dict[str, KeySpec] = {}
    for s in specs:
        if s.official in out:
            raise AssertionError(f"two parameters map to {s.official}: {out[s.official].ours} and {s.ours}")
        out[s.official] = s
    return out


def check_keys(
    found: dict[str, tuple[int, ...]], needed: list[KeySpec], known: dict[str, KeySpec], *, source: str
) -> None:
    """Raise CheckpointError on the first missing, unexpected or mis-shaped key.

    `found` maps the file's keys to their shapes; `needed` must all be present; keys that are `known`
    but not needed (e.g. VQ-GANs when pruned) are allowed and checked for shape, anything else is
    unexpected.
    """
    for key in found:
        if key not in known:
            raise CheckpointError(
                f"{source}: unexpected key {key!r} (not part of the UIO2 schema for this config)"
            )
    for spec in needed:
        if spec.official not in found:
            raise CheckpointError(f"{source}: missing key {spec.official!r} (our parameter {spec.ours})")
    for key, shape in found.items():
        want = known[key].official_shape
        if tuple(shape) != want:
            raise CheckpointError(f"{source}: key {key!r} has shape {tuple(shape)}, expected {want}")


def check_dtype(key: str, dtype: np.dtype, *, source: str) -> None:
    """Only floating tensors are parameters; anything else means a wrong or corrupt file."""
    if np.dtype(dtype).kind != "f" and str(dtype) != "bfloat16":
        raise CheckpointError(f"{source}: key {key!r} has dtype {dtype}, expected a floating dtype")
