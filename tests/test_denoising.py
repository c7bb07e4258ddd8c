"""Text paradigms of the mixture of denoisers: inputs + targets reconstruct the text exactly."""

import numpy as np
import pytest

from training.denoising import PREFIX_IDS, TextDenoisingData, corrupt
from uio2_core.vocab import EOS_ID, tiny_vocabulary

SENTINELS = range(33000, 33200)


def _reconstruct(inputs, targets):
    """Fill each sentinel of the input with the target's span after the same sentinel."""
    spans, current = {}, None
    for t in targets[:-1]:
        if t in SENTINELS:
            current = t
            spans[t] = []
        else:
            spans[current].append(t)
    out = []
    for t in inputs[1:-1]:
        out += spans[t] if t in SENTINELS else [t]
    return out


@pytest.mark.parametrize(("paradigm", "density"), [("R", 0.15), ("X", 0.5)])
def test_span_corruption_round_trips_at_the_right_rate(paradigm, density):
    rng = np.random.default_rng(0)
    text = list(rng.integers(3, 32000, 200))
    inputs, targets = corrupt(text, paradigm, rng)
    assert inputs[0] == PREFIX_IDS[paradigm] and inputs[-1] == EOS_ID and targets[-1] == EOS_ID
    assert _reconstruct(inputs, targets) == text
    noised = sum(1 for t in targets[:-1] if t not in SENTINELS)
    assert noised == round(200 * density)


def test_causal_paradigm_splits_the_text():
    rng = np.random.default_rng(1)
    text = list(range(10, 30))
    inputs, targets = corrupt(text, "S", rng)
    assert inputs[0] == PREFIX_IDS["S"] and inputs[1:-1] + targets[:-1] == text
    with pytest.raises(ValueError, match="unknown paradigm"):
        corrupt(text, "Q", rng)


def test_batches_are_deterministic_and_fixed_shape():
    vocab = tiny_vocabulary()
    texts = [
        vocab.encode(s) for s in ("pick up the red block and place it in the bowl", "turn left then stop")
    ]
    data = TextDenoisingData(texts, batch_size=4, input_len=32, target_len=24)
    a, b = data.batch_at(5), data.batch_at(5)
    assert a["text"].shape == (4, 32) and a["targets/text"].shape == (4, 24)
    np.testing.assert_array_equal(a["text"], b["text"])
    assert set(a["text"][:, 0]) <= set(PREFIX_IDS.values())
