"""Packing: a packed batch gives the same per-example loss as the examples alone."""

import jax.numpy as jnp
import numpy as np

from training.objective import per_segment_loss, token_losses
from training.packing import pack_inputs, pack_sequence, pack_targets


def test_packed_rows_give_the_same_per_example_loss(tiny_model, tiny_cfg):
    rng = np.random.default_rng(0)
    n, lt = 4, 10
    text = np.zeros((n, lt), np.int32)
    targets = np.zeros((n, 6), np.int32)
    for i, (a, b) in enumerate([(4, 3), (9, 5), (2, 1), (6, 4)]):  # varied prompt and answer lengths
        text[i, :a] = rng.integers(3, 1000, a)
        text[i, a] = 1
        targets[i, :b] = rng.integers(32000, 33000, b)
        targets[i, b] = 1
    inputs = {"text": jnp.asarray(text), "image": jnp.asarray(rng.normal(size=(n, 64, 64, 3)), jnp.float32)}
    tmask = targets != 0

    # unpacked: each example alone
    logits = tiny_model.decode(tiny_model.encode(inputs), {"text": jnp.asarray(targets)})["text"]
    _, ce = token_losses(logits, jnp.asarray(targets), 0.0)
    alone = (np.asarray(ce) * tmask).sum(1) / tmask.sum(1)

    # packed: 2 rows, budgets smaller than the folded lengths (compaction drops only padding)
    enc_len = tiny_model.embed_inputs(inputs).mask.shape[1]
    enc = pack_inputs(tiny_model, inputs, budget=2 * enc_len - 5)  # pair 0 has exactly 5 padding tokens
    pt, pm, ps = pack_targets({"text": jnp.asarray(targets)}, {"text": jnp.asarray(tmask)}, budget=10)
    plogits = tiny_model.decode(enc, pt, pm, ps)["text"]
    packed = np.asarray(per_segment_loss(plogits, pt["text"], pm["text"], ps["text"], 2)).reshape(-1)
    np.testing.assert_allclose(packed, alone, rtol=2e-4, atol=2e-4)
    assert pt["text"].shape == (2, 10) and int(pm["text"].sum()) == int(tmask.sum())
    # 3 tokens fewer than pair 0 needs: exactly those 3 are counted as cut (pair 1 has 10 padding tokens)
    assert int(pack_sequence(tiny_model, inputs, budget=2 * enc_len - 8)[2]) == 3
