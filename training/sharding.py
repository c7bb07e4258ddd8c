"""One code path from one CPU to many devices: a (data, fsdp, model) mesh and named partition rules.

Rules map a parameter's path to a PartitionSpec (first match wins). A dimension whose size does not
divide by its mesh axis falls back to replication, so every config runs on every mesh shape; the
fallback is reported (`partition_report`, and a warning from `param_shardings`) because a large
replicated weight costs its full size on every device.
The optimiser state follows the parameter it belongs to (`opt_state_shardings`): full-size moments
take the parameter's spec, Adafactor's factored row/column moments keep the spec of the axes they keep.
Batches are split over (data, fsdp) on their leading axis.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

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
    # the frozen ViT / AST (replicated, they would cost their full size on every device)
    (r"resblocks/\d+/attn/(query|key|value)/kernel$", P("fsdp", "model")),
    (r"resblocks/\d+/attn/out_proj/kernel$", P("model", "fsdp")),
    (r"resblocks/\d+/mlp/fc1/kernel$", P("fsdp", "model")),
    (r"resblocks/\d+/mlp/fc2/kernel$", P("model", "fsdp")),
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


def rule_spec(path: str, ndim: int) -> P:
    """The spec the first matching rule asks for, padded/cut to `ndim` axes."""
    spec = next(s for pattern, s in PARTITION_RULES if re.search(pattern, path))
    axes = list(spec) + [None] * (ndim - len(spec))
    return P(*axes[:ndim])


def spec_for(path: str, shape: tuple[int, ...], mesh: Mesh) -> P:
    axes = rule_spec(path, len(shape))
    fixed = [a if a is None or shape[i] % mesh.shape[a] == 0 else None for i, a in enumerate(axes)]
    return P(*fixed)


def _nbytes(x) -> int:
    return int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize


@dataclass
class PartitionReport:
    """Where the parameters go on one mesh: bytes per device and what stays replicated, and why."""

    total_bytes: int = 0
    per_device_bytes: int = 0
    replicated_bytes: int = 0  # parameters held whole on every device (norms, biases, no rule)
    # rule axes dropped because the dimension does not divide: (path, shape, rule spec, used spec, bytes)
    fallbacks: list[tuple[str, tuple[int, ...], str, str, int]] = field(default_factory=list)

    @property
    def fallback_bytes(self) -> int:
        return sum(f[-1] for f in self.fallbacks)

    def summary(self) -> str:
        gb = 1e9
        lines = [
            f"parameters {self.total_bytes / gb:.3f} GB, {self.per_device_bytes / gb:.3f} GB per device, "
            f"{self.replicated_bytes / gb:.3f} GB replicated on every device"
        ]
        for path, shape, want, got, b in self.fallbacks:
            lines.append(f"  {path} {shape}: rule {want} does not divide, using {got} ({b / gb:.3f} GB)")
        return "\n".join(lines)


def _mesh_size(mesh: Mesh, axis) -> int:
    names = axis if isinstance(axis, tuple) else (axis,)
    return int(np.prod([mesh.shape[a] for a in names]))


def partition_report(params, mesh: Mesh) -> PartitionReport:
    """Check every parameter (arrays or jax.ShapeDtypeStruct: works on abstract shapes) against the rules."""
    report = PartitionReport()
    for p, x in jax.tree_util.tree_flatten_with_path(params)[0]:
        path, shape, nbytes = _path_str(p), tuple(x.shape), _nbytes(x)
        want, got = rule_spec(path, len(shape)), spec_for(path, shape, mesh)
        report.total_bytes += nbytes
        report.per_device_bytes += _nbytes(jax.ShapeDtypeStruct(NamedSharding(mesh, got).shard_shape(shape),
                                                                x.dtype))  # fmt: skip
        if all(_mesh_size(mesh, a) == 1 for a in got if a is not None):
            report.replicated_bytes += nbytes
        if any(a != b and _mesh_size(mesh, a) > 1 for a, b in zip(want, got, strict=True) if a is not None):
            report.fallbacks.append((path, shape, str(want), str(got), nbytes))
    return report


def param_shardings(params, mesh: Mesh, *, warn: bool = True):
    """A NamedSharding per parameter (same tree structure); warns when a rule falls back to replication."""
    if warn:
        report = partition_report(params, mesh)
        if report.fallbacks:
            warnings.warn(
                f"{len(report.fallbacks)} parameters ({report.fallback_bytes / 1e9:.3f} GB) are replicated "
                f"because a dimension does not divide by its mesh axis {dict(mesh.shape)}:\n"
                f"{report.summary()}",
                stacklevel=2,
            )
    return jax.tree_util.tree_map_with_path(
        lambda p, x: NamedSharding(mesh, spec_for(_path_str(p), tuple(x.shape), mesh)), params
    )


def _keys(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _factored_dims(shape: tuple[int, ...], min_dim: int = 128) -> tuple[int, int] | None:
    """(second largest, largest) axis, as optax's Adafactor picks them (None: not factored)."""
    if len(shape) < 2:
        return None
    order = np.argsort(shape)
    if shape[order[-2]] < min_dim:
        return None
    return int(order[-2]), int(order[-1])


def opt_state_shardings(opt_state, params, shardings, mesh: Mesh, *, min_dim_size_to_factor: int = 128):
    """A NamedSharding per optimiser-state leaf, following the parameter each leaf belongs to.

    A leaf belongs to the parameter whose path ends its own path (optax nests per-parameter trees
    inside its states). Same shape as the parameter: the parameter's spec. Adafactor's `v_row` drops
    the largest axis and `v_col` the second largest (optax.adafactor): they keep the other axes' specs.
    Anything else (step counts, schedules, placeholders) is replicated.
    """
    by_path = {}
    for (p, x), (_, s) in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                              jax.tree_util.tree_flatten_with_path(shardings)[0], strict=True):  # fmt: skip
        by_path[_keys(p)] = (tuple(x.shape), s.spec)
    replicated = NamedSharding(mesh, P())

    def one(path, leaf) -> NamedSharding:
        keys = _keys(path)
        owner = next((by_path[keys[i:]] for i in range(len(keys)) if keys[i:] in by_path), None)
        if owner is None:
            return replicated
        shape, spec = owner
        spec = list(spec) + [None] * (len(shape) - len(spec))
        leaf_shape = tuple(leaf.shape)
        dims = _factored_dims(shape, min_dim_size_to_factor)
        kind = next((k for k in reversed(keys) if k in ("v_row", "v_col")), None)
        if kind is not None and dims is not None:
            dropped = dims[1] if kind == "v_row" else dims[0]
            kept = spec[:dropped] + spec[dropped + 1 :]
            if len(kept) == len(leaf_shape):
                return NamedSharding(mesh, P(*kept))
            return replicated
        if leaf_shape == shape:
            return NamedSharding(mesh, P(*spec))
        return replicated

    return jax.tree_util.tree_map_with_path(one, opt_state)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(("data", "fsdp")))


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    n = mesh.shape["data"] * mesh.shape["fsdp"]
    for k, v in batch.items():
        if v.shape[0] % n:
            raise ValueError(f"batch field {k!r} has {v.shape[0]} rows, not divisible by data x fsdp = {n}")
    return jax.device_put(batch, batch_sharding(mesh))
