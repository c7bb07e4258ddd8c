"""UIO2's training objective: per-modality token cross-entropy normalised by that modality's mask,
summed over modalities, plus z-loss 1e-4 (reference uio2-architecture.md section 7.1).

Location targets (the 1000 bins at ids 32000-32999) can be softened (`location_sigma` > 0): the target
becomes a Gaussian over neighbouring bins (sigma in bins), so a guess one bin off is nearly right
instead of as wrong as one 500 bins off. A VIMA pick lands on its object within a few centimetres,
i.e. tens of bins; the hard target gives no gradient towards "close"."""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from uio2_core.vocab import LOCATION_START, NUM_LOCATION_BINS

Z_LOSS = 1e-4


def is_location(targets: jax.Array) -> jax.Array:
    return (targets >= LOCATION_START) & (targets < LOCATION_START + NUM_LOCATION_BINS)


def token_losses(
    logits: jax.Array, targets: jax.Array, z_loss: float = Z_LOSS, location_sigma: float = 0.0
) -> tuple[jax.Array, jax.Array]:
    """Per-token (training loss with z-loss, hard cross-entropy), float32, [B, L]. The training loss
    uses the softened location target when `location_sigma` > 0; the second is always the plain one."""
    logits = logits.astype(jnp.float32)
    lse = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    ce = lse - target_logit
    train = ce
    if location_sigma > 0:
        loc = logits[..., LOCATION_START : LOCATION_START + NUM_LOCATION_BINS]
        cols = jnp.arange(NUM_LOCATION_BINS, dtype=jnp.float32)
        # clipped: a non-location target would otherwise make q 0/0 = NaN, whose gradient leaks
        # through the jnp.where below
        centre = jnp.clip(targets - LOCATION_START, 0, NUM_LOCATION_BINS - 1).astype(jnp.float32)[..., None]
        q = jnp.exp(-0.5 * jnp.square((cols - centre) / location_sigma))
        q = q / q.sum(-1, keepdims=True)
        soft = lse - (q * loc).sum(-1)
        train = jnp.where(is_location(targets), soft, ce)
    return train + z_loss * jnp.square(lse), ce


def modality_loss(
    logits: jax.Array, targets: jax.Array, mask: jax.Array, z_loss: float = Z_LOSS,
    location_sigma: float = 0.0,
) -> tuple[jax.Array, jax.Array]:  # fmt: skip
    """(loss with z-loss, plain cross-entropy), each normalised by the mask's sum over the batch."""
    total, ce = token_losses(logits, targets, z_loss, location_sigma)
    m = mask.astype(jnp.float32)
    denom = jnp.maximum(m.sum(), 1.0)
    return (total * m).sum() / denom, (ce * m).sum() / denom


def kept_positions(mask: jax.Array, share: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The flattened target positions that get logits when only `share` of them do (TrainConfig's
    logit_share): the valid ones first, in order, then padding. Returns (indices [K], their mask [K],
    valid tokens left out), K = ceil(share * positions)."""
    flat = mask.reshape(-1).astype(bool)
    k = max(1, math.ceil(share * flat.size))
    order = jnp.argsort(~flat, stable=True)[:k]
    kept = flat[order]
    return order, kept, flat.sum() - kept.sum()


def uio2_loss(
    logits: Mapping[str, jax.Array],
    targets: Mapping[str, jax.Array],
    masks: Mapping[str, jax.Array],
    z_loss: float = Z_LOSS,
    location_sigma: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Sum over target modalities; metrics hold each modality's cross-entropy and token accuracy, and
    for text the plain cross-entropy of the location tokens alone (0 when a batch has none)."""
    loss = jnp.zeros((), jnp.float32)
    metrics: dict[str, jax.Array] = {}
    for m, lg in logits.items():
        lm, ce = modality_loss(lg, targets[m], masks[m], z_loss, location_sigma if m == "text" else 0.0)
        loss = loss + lm
        w = masks[m].astype(jnp.float32)
        metrics[f"{m}_ce"] = ce
        metrics[f"{m}_accuracy"] = ((jnp.argmax(lg, -1) == targets[m]) * w).sum() / jnp.maximum(w.sum(), 1.0)
        if m == "text":
            _, loc_ce = modality_loss(lg, targets[m], masks[m].astype(bool) & is_location(targets[m]), 0.0)
            metrics["text_location_ce"] = loc_ce
    metrics["loss"] = loss
    return loss, metrics


def per_segment_loss(
    logits: jax.Array, targets: jax.Array, mask: jax.Array, segment_ids: jax.Array, num_segments: int
) -> jax.Array:
    """Mean cross-entropy of each packed segment of each row: [B, num_segments] (segment ids 1..n)."""
    _, ce = token_losses(logits, targets, 0.0)
    w = mask.astype(jnp.float32)
    onehot = jax.nn.one_hot(segment_ids - 1, num_segments) * w[..., None]
    return jnp.einsum("bl,bls->bs", ce, onehot) / jnp.maximum(onehot.sum(1), 1.0)
