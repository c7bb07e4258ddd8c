"""Host-side decode speed-ups keep results identical: the cached model split, the grammar table
built once per step kind, jump-forward decoding over forced grammar runs."""

import numpy as np
from flax import nnx

from uio2_core import decoding
from uio2_core.decoding import DecodeConfig, generate, split_model


def test_split_is_cached_and_sees_in_place_parameter_updates(tiny_cfg, tiny_batch):
    from uio2_core.model import build_model

    model = build_model(tiny_cfg, seed=1, with_vqgan=False)  # mutated below: not the shared fixture
    cfg = DecodeConfig(max_new_tokens=4)
    first = np.asarray(generate(model, tiny_batch, "text", cfg).tokens)
    assert split_model(model)[1] is split_model(model)[1]  # one traversal, reused
    decoding.HOST_CACHING = False
    try:
        np.testing.assert_array_equal(np.asarray(generate(model, tiny_batch, "text", cfg).tokens), first)
    finally:
        decoding.HOST_CACHING = True
    # an in-place update (what nnx.update and checkpoint loading do) reaches the cached split
    table = model.decoder.decoder_norm.scale
    nnx.update(model, nnx.State({"decoder": {"decoder_norm": {"scale": -table[...]}}}))
    flipped = np.asarray(generate(model, tiny_batch, "text", cfg).tokens)
    decoding.HOST_CACHING = False
    try:
        np.testing.assert_array_equal(np.asarray(generate(model, tiny_batch, "text", cfg).tokens), flipped)
    finally:
        decoding.HOST_CACHING = True
    assert not np.array_equal(flipped, first)
