"""Location error of VIMA actions: how far the model's pick and place land from the recorded ones.

Token accuracy hides what matters for tabletop success: most tokens of a VIMA action are forced by
the grammar (0.94 "accuracy" with every location wrong), and a location one bin off is as wrong to it
as one 500 bins off. These metrics read the location slots only, in bins and in metres (x spans
0.5 m and y 1.0 m over 1000 bins, `policies.codecs.VIMA_BOUNDS`), for pick (pose0) and place
(pose1).

The model's guess at each slot is the most likely location bin given the recorded tokens before it
(teacher forcing, one forward pass): the same choice greedy constrained decoding makes whenever the
earlier locations are right, and cheap enough to run on held-out examples during training.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from policies.codecs import VIMA_BOUNDS
from uio2_core.vocab import LOCATION_START, NUM_LOCATION_BINS

SLOTS = ("pick_x", "pick_y", "pick_r", "place_x", "place_y", "place_r")  # order in the step sentence
_SPAN_M = (VIMA_BOUNDS["high"] - VIMA_BOUNDS["low"]).astype(np.float64)  # metres over the 1000 bins


def location_bins(tokens: np.ndarray) -> np.ndarray:
    """Bin of each location token (-1 elsewhere): id 32999 - b <-> bin b."""
    tokens = np.asarray(tokens)
    is_loc = (tokens >= LOCATION_START) & (tokens < LOCATION_START + NUM_LOCATION_BINS)
    return np.where(is_loc, LOCATION_START + NUM_LOCATION_BINS - 1 - tokens, -1)


@nnx.jit
def _predicted_bins(model: Any, batch: dict[str, jax.Array]) -> jax.Array:
    """[B, L] most likely location bin at every target position, by teacher forcing."""
    from training.trainer import split_batch

    inputs, targets, masks, _ = split_batch(batch)
    enc = model.encode_sequence(model.embed_inputs(inputs))
    logits = model.decode(enc, targets, masks)["text"]
    loc = logits[..., LOCATION_START : LOCATION_START + NUM_LOCATION_BINS]
    # ids run backwards over bins: column j is bin 999 - j
    return NUM_LOCATION_BINS - 1 - jnp.argmax(loc, axis=-1)


def vima_slots(batch: dict[str, np.ndarray], predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true, predicted) bins [N, 6] of the rows whose targets hold one VIMA action (6 location slots)."""
    true_bins = location_bins(batch["targets/text"])
    rows_t, rows_p = [], []
    for t, p in zip(true_bins, predicted, strict=True):
        where = np.flatnonzero(t >= 0)
        if len(where) == len(SLOTS):
            rows_t.append(t[where])
            rows_p.append(p[where])
    empty = np.zeros((0, len(SLOTS)), np.int64)
    return (np.stack(rows_t) if rows_t else empty), (np.stack(rows_p) if rows_p else empty)


def summarize(true_bins: np.ndarray, pred_bins: np.ndarray) -> dict[str, float]:
    """Mean errors over rows: per xy slot in bins, per pose in metres (Euclidean), rotation in degrees,
    and the share of picks / places within 2 cm."""
    if len(true_bins) == 0:
        return {"location_examples": 0}
    err = np.abs(pred_bins.astype(np.int64) - true_bins.astype(np.int64))
    out: dict[str, float] = {"location_examples": len(true_bins)}
    for i, pose in ((0, "pick"), (3, "place")):
        metres = np.hypot(err[:, i] * _SPAN_M[0] / 999.0, err[:, i + 1] * _SPAN_M[1] / 999.0)
        rot = np.minimum(err[:, i + 2], NUM_LOCATION_BINS - err[:, i + 2]) * 360.0 / 999.0
        out[f"{pose}_x_bins"] = float(err[:, i].mean())
        out[f"{pose}_y_bins"] = float(err[:, i + 1].mean())
        out[f"{pose}_m"] = float(metres.mean())
        out[f"{pose}_within_2cm"] = float((metres <= 0.02).mean())
        out[f"{pose}_rot_deg"] = float(rot.mean())
    return out


def location_error(model: Any, batches: Iterable[dict[str, np.ndarray]]) -> dict[str, float]:
    """Location error of `model` on VIMA examples (batches as `TrainingData.batch_at` makes them)."""
    trues, preds = [], []
    for batch in batches:
        t, p = vima_slots(batch, np.asarray(_predicted_bins(model, batch)))
        trues.append(t)
        preds.append(p)
    if not trues:
        return {"location_examples": 0}
    return summarize(np.concatenate(trues), np.concatenate(preds))


@nnx.jit
def _first_answers(model: Any, batch: dict[str, jax.Array]) -> jax.Array:
    """[B] most likely first target token, by teacher forcing."""
    from training.trainer import split_batch

    inputs, targets, masks, _ = split_batch(batch)
    enc = model.encode_sequence(model.embed_inputs(inputs))
    return jnp.argmax(model.decode(enc, targets, masks)["text"][:, 0], axis=-1)


def answer_accuracy(model: Any, batches: Iterable[dict[str, np.ndarray]]) -> float:
    """Share of rows whose first answer token is right (the grounding questions' yes / no)."""
    hits = [np.asarray(_first_answers(model, b)) == b["targets/text"][:, 0] for b in batches]
    return float(np.concatenate(hits).mean()) if hits else float("nan")
