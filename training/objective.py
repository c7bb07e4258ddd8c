"""UIO2's training objective: per-modality token cross-entropy normalised by that modality's mask,
summed over modalities, plus z-loss 1e-4 (reference uio2-architecture.md section 7.1)."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

Z_LOSS = 1e-4


def token_losses(
    logits: jax.Array, targets: jax.Array, z_loss: float = Z_LOSS
) -> tuple[jax.Array, jax.Array]:
    """Per-token (cross-entropy + z-loss, cross-entropy), float32, [B, L]."""
    logits = logits.astype(jnp.float32)
    lse = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    ce = lse - target_logit
    return ce + z_loss * jnp.square(lse), ce


def modality_loss(
    logits: jax.Array, targets: jax.Array, mask: jax.Array, z_loss: float = Z_LOSS
) -> tuple[jax.Array, jax.Array]:
    """(loss with z-loss, plain cross-entropy), each normalised by the mask's sum over the batch."""
    total, ce = token_losses(logits, targets, z_loss)
    m = mask.astype(jnp.float32)
    denom = jnp.maximum(m.sum(), 1.0)
    return (total * m).sum() / denom, (ce * m).sum() / denom


def uio2_loss(
    logits: Mapping[str, jax.Array],
    targets: Mapping[str, jax.Array],
    masks: Mapping[str, jax.Array],
    z_loss: float = Z_LOSS,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Sum over target modalities; metrics hold each modality's cross-entropy and token accuracy."""
    loss = jnp.zeros((), jnp.float32)
    metrics: dict[str, jax.Array] = {}
    for m, lg in logits.items():
        lm, ce = modality_loss(lg, targets[m], masks[m], z_loss)
        loss = loss + lm
        w = masks[m].astype(jnp.float32)
        metrics[f"{m}_ce"] = ce
        metrics[f"{m}_accuracy"] = ((jnp.argmax(lg, -1) == targets[m]) * w).sum() / jnp.maximum(w.sum(), 1.0)
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
