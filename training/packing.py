"""Packing as UIO2 does it (reference 7.2): two examples per row, valid tokens compacted to fixed
encoder / decoder budgets, attention kept inside each example by segment ids.

The batch is "folded": rows 2i and 2i+1 become row i with segment ids 1 and 2. Each token keeps
its own RoPE row (positions travel with tokens), so compaction does not change any example's
view of itself: a packed row computes exactly what the two examples compute alone, in less
padding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from uio2_core.inputs import InputSequence
from uio2_core.model import Encoded, UIO2Model


def _fold(x: jax.Array) -> jax.Array:
    """[2B, L, ...] -> [B, 2L, ...] (row i = examples 2i, 2i+1 side by side)."""
    b2, length = x.shape[:2]
    if b2 % 2:
        raise ValueError(f"packing needs an even number of examples, got {b2}")
    return x.reshape(b2 // 2, 2 * length, *x.shape[2:])


def _segments(mask: jax.Array) -> jax.Array:
    """Segment ids (1, 2) of a folded [B, 2L] row, 0 where masked."""
    length = mask.shape[1] // 2
    seg = jnp.concatenate([jnp.ones((length,), jnp.int32), jnp.full((length,), 2, jnp.int32)])
    return jnp.where(mask, seg[None], 0)


def _compact(mask: jax.Array, budget: int, *arrays: jax.Array) -> tuple[jax.Array, ...]:
    """Move valid tokens to the front (order kept) and cut every array to `budget` tokens."""
    order = jnp.argsort(~mask, axis=1, stable=True)[:, :budget]
    take = lambda a: jnp.take_along_axis(a, order.reshape(*order.shape, *([1] * (a.ndim - 2))), axis=1)  # noqa: E731
    return (take(mask), *(take(a) for a in arrays))


def pack_inputs(model: UIO2Model, inputs: dict, budget: int) -> Encoded:
    """Embed 2B examples, fold to B rows, compact to `budget` tokens, encode with segment masks."""
    return pack_inputs_counted(model, inputs, budget)[0]


def pack_inputs_counted(model: UIO2Model, inputs: dict, budget: int) -> tuple[Encoded, jax.Array]:
    """`pack_inputs` and the number of valid tokens that did not fit the budget (cut)."""
    seq, seg, cut = pack_sequence(model, inputs, budget)
    return model.encode_sequence(seq, seg), cut


def pack_sequence(model: UIO2Model, inputs: dict, budget: int) -> tuple[InputSequence, jax.Array, jax.Array]:
    """The packed input sequence (before the encoder), its segment ids and the valid tokens cut."""
    seq = model.embed_inputs(inputs)
    mask = _fold(seq.mask)
    seg = _segments(mask)
    valid = jnp.sum(mask)
    mask, embed, rope, seg = _compact(mask, budget, _fold(seq.embed), _fold(seq.rope), seg)
    return InputSequence(embed, mask, rope), seg, valid - jnp.sum(mask)


def pack_targets(
    targets: dict[str, jax.Array], masks: dict[str, jax.Array], budget: int
) -> tuple[dict[str, jax.Array], dict[str, jax.Array], dict[str, jax.Array]]:
    """Fold and compact each target modality; returns (targets, masks, segment ids)."""
    out_t, out_m, out_s = {}, {}, {}
    for m, t in targets.items():
        mask = _fold(masks[m].astype(bool))
        seg = _segments(mask)
        mask, tok, seg = _compact(mask, budget, _fold(t), seg)
        out_t[m], out_m[m], out_s[m] = jnp.where(mask, tok, 0), mask, seg
    return out_t, out_m, out_s
