"""One code path from one CPU to many devices: a (data, fsdp, model) mesh and named partition rules.

Rules map a parameter's path to a PartitionSpec (first match wins). A dimension whose size does not
divide by its mesh axis falls back to replication, so every config runs on every mesh shape.
Batches are split over (data, fsdp) on their leading axis.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXES = ("data", "fsdp", "model")

# (regex over the "/"-joined parameter path, spec for [rows, cols] of a kernel or embedding)
PARTITION_RULES: tuple[tuple[str, P], ...] = (
    (r"_token_embedder/embedding$", P("model", "fsdp")),
    (
        r"(attention|self_attention|encoder_decoder_attention|xattention)/(query|key|value)/kernel$",
        P("fsdp", "model"),
    ),
    (r"(attention|self_attention|encoder_decoder_attention|xattention)/out/kernel$", P("model", "fsdp")),
    (r"mlp/(wi_0|wi_1|wi)/kernel$", P("fsdp", "model")),
    (r"mlp/wo/kernel$", P("model", "fsdp")),
    (r"(projection|pre_projection|post_projection)/kernel$", P("fsdp", "model")),
    (r".*", P()),
)


def make_mesh(data: int = -1, fsdp: int = 1, model: int = 1, devices: Sequence | None = None) -> Mesh:
    """A mesh over all (or the given) devices; -1 takes what the other axes leave."""
    devices = list(devices if devices is not None else jax.devices())
    n = len(devices)
    sizes = [data, fsdp, model]
    if sizes.count(-1) > 1:
        raise ValueError("at most one mesh axis may be -1")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if n % known:
            raise ValueError(f"{n} devices do not divide into fsdp x model = {known}")
        sizes[sizes.index(-1)] = n // known
    if int(np.prod(sizes)) != n:
        raise ValueError(
            f"mesh {dict(zip(AXES, sizes, strict=True))} needs {int(np.prod(sizes))} devices, have {n}"
        )
    return Mesh(np.asarray(devices).reshape(sizes), AXES)


def _path_str(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def spec_for(path: str, shape: tuple[int, ...], mesh: Mesh) -> P:
    spec = next(s for pattern, s in PARTITION_RULES if re.search(pattern, path))
    axes = list(spec) + [None] * (len(shape) - len(spec))
    axes = axes[: len(shape)]
    fixed = [a if a is None or shape[i] % mesh.shape[a] == 0 else None for i, a in enumerate(axes)]
    return P(*fixed)


def param_shardings(params, mesh: Mesh):
    """A NamedSharding per parameter (same tree structure)."""
    return jax.tree_util.tree_map_with_path(
        lambda p, x: NamedSharding(mesh, spec_for(_path_str(p), tuple(x.shape), mesh)), params
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(("data", "fsdp")))


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    n = mesh.shape["data"] * mesh.shape["fsdp"]
    for k, v in batch.items():
        if v.shape[0] % n:
            raise ValueError(f"batch field {k!r} has {v.shape[0]} rows, not divisible by data x fsdp = {n}")
    return jax.device_put(batch, batch_sharding(mesh))
