"""The UIO2 network on the tiny config: cached decoding, masks, packing, and input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uio2_core.batch import InputError
from uio2_core.config import get_config
from uio2_core.inputs import InputSequence
from uio2_core.model import segment_positions, shift_right


@pytest.mark.parametrize("modality", ["text", "image", "audio"])
def test_cached_incremental_decoding_equals_teacher_forced_forward(tiny_model, tiny_batch, modality):
    vocab = tiny_model.token_embedder(modality).num_embeddings
    b, n = 2, 7
    targets = jnp.asarray(np.random.default_rng(1).integers(3, vocab, size=(b, n)), jnp.int32)
    enc = tiny_model.encode(tiny_batch)
    full = tiny_model.decode(enc, {modality: targets})[modality]
    cache = tiny_model.init_cache(enc, modality, n)
    feed = shift_right(targets)
    for i in range(n):
        step, cache = tiny_model.decode_step(enc, modality, feed[:, i], jnp.int32(i), cache)
        np.testing.assert_allclose(step, full[:, i], atol=2e-4, rtol=2e-4)
    assert full.shape == (b, n, vocab)


def test_logits_are_tied_embedding_over_sqrt_d(tiny_model, tiny_batch):
    enc = tiny_model.encode(tiny_batch)
    h = jax.random.normal(jax.random.key(0), (2, 3, tiny_model.cfg.transformer.d_model))
    e = tiny_model.text_token_embedder.embedding[...]
    np.testing.assert_allclose(
        tiny_model.logits("text", h), h @ e.T / np.sqrt(e.shape[1]), rtol=1e-5, atol=1e-5
    )
    assert enc.encoded.dtype == jnp.float32


def test_padded_history_frame_changes_nothing_but_a_valid_frame_does(tiny_model, tiny_batch):
    targets = {"text": jnp.array([[5, 6, 1], [7, 1, 0]], jnp.int32)}
    valid = np.asarray(targets["text"] != 0)  # outputs at padded target positions are meaningless
    ref = tiny_model(tiny_batch, targets)["text"][valid]
    padded = dict(tiny_batch)
    frames = np.asarray(tiny_batch["image_history"]).copy()
    frames[:, -1] = 9.0  # the last frame is masked out in the batch
    padded["image_history"] = jnp.asarray(frames)
    np.testing.assert_allclose(tiny_model(padded, targets)["text"][valid], ref, atol=1e-5)
    frames[:, 0] = 9.0  # a valid frame
    padded["image_history"] = jnp.asarray(frames)
    assert np.abs(tiny_model(padded, targets)["text"][valid] - ref).max() > 1e-4


def test_padded_text_tokens_change_nothing(tiny_model, tiny_batch):
    targets = {"text": jnp.array([[5, 6, 1], [7, 1, 0]], jnp.int32)}
    valid = np.asarray(targets["text"] != 0)
    ref = tiny_model(tiny_batch, targets)["text"][valid]
    longer = dict(tiny_batch)
    longer["text"] = jnp.pad(tiny_batch["text"], ((0, 0), (0, 4)))
    np.testing.assert_allclose(tiny_model(longer, targets)["text"][valid], ref, atol=1e-5)


def _example(batch, i):
    return {k: v[i : i + 1] for k, v in batch.items()}


def test_packed_segments_are_independent_and_match_unpacked(tiny_model, batch_factory, tiny_cfg):
    batch = batch_factory(tiny_cfg, batch_size=2, seed=3)
    del batch["audio"], batch["audio_history"]
    ex1, ex2 = _example(batch, 0), _example(batch, 1)
    t1 = jnp.array([[11, 12, 13, 1]], jnp.int32)
    t2 = jnp.array([[21, 22, 1]], jnp.int32)

    def packed_logits(ex2_inputs, t2_tokens):
        s1, s2 = tiny_model.embed_inputs(ex1), tiny_model.embed_inputs(ex2_inputs)
        seq = InputSequence(*(jnp.concatenate([a, b], axis=1) for a, b in zip(s1, s2, strict=True)))
        seg = jnp.concatenate(
            [jnp.ones(s1.mask.shape, jnp.int32), jnp.full(s2.mask.shape, 2, jnp.int32)], axis=1
        )
        enc = tiny_model.encode_sequence(seq, seg)
        tseg = jnp.array([[1] * t1.shape[1] + [2] * t2_tokens.shape[1]], jnp.int32)
        logits = tiny_model.decode(
            enc, {"text": jnp.concatenate([t1, t2_tokens], axis=1)}, segment_ids={"text": tseg}
        )["text"]
        return logits[:, : t1.shape[1]], logits[:, t1.shape[1] :]

    first, second = packed_logits(ex2, t2)
    alone = tiny_model(ex1, {"text": t1})["text"]
    np.testing.assert_allclose(first, alone, atol=2e-4, rtol=2e-4)
    # another segment's input token and target token change nothing in the first segment
    ex2b = dict(ex2)
    ex2b["text"] = ex2["text"].at[0, 0].set(777)
    first_b, second_b = packed_logits(ex2b, jnp.array([[21, 99, 1]], jnp.int32))
    np.testing.assert_allclose(first_b, first, atol=1e-5)
    assert np.abs(second_b - second).max() > 1e-4


def test_segment_positions_and_shift_right_restart_per_segment():
    seg = jnp.array([[1, 1, 1, 2, 2, 0]])
    np.testing.assert_array_equal(segment_positions(seg), [[0, 1, 2, 0, 1, 0]])
    np.testing.assert_array_equal(shift_right(jnp.array([[5, 6, 1, 7, 1, 0]]), seg), [[0, 5, 6, 0, 7, 0]])


def test_target_modalities_do_not_attend_to_each_other(tiny_model, tiny_batch):
    enc = tiny_model.encode(tiny_batch)
    text = jnp.array([[5, 6, 1], [7, 1, 0]], jnp.int32)
    img = jnp.full((2, 4), 9, jnp.int32)
    both = tiny_model.decode(enc, {"text": text, "image": img})
    alone = tiny_model.decode(enc, {"image": img})
    np.testing.assert_allclose(both["image"], alone["image"], atol=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.update(image=b["image"][:, :32]), "'image' must have shape"),
        (lambda b: b.update(image=(b["image"] * 255).astype(jnp.uint8)), "must be a float array"),
        (
            lambda b: b.update(image_history=jnp.zeros((2, 9, 48, 48, 3))),
            "more than the 8 the model supports",
        ),
        (lambda b: b.update(text=jnp.ones((2, 513), jnp.int32)), "more than the limit of 512"),
        (lambda b: b.update(text=b["text"].astype(jnp.float32)), "integer token ids"),
        (lambda b: b.update(video=b["image"]), "unknown input key"),
        (lambda b: b.update(audio=b["audio"][:1]), "has B=1 but another input has B=2"),
    ],
)
def test_bad_inputs_get_clear_errors(tiny_model, tiny_batch, change, message):
    batch = dict(tiny_batch)
    change(batch)
    with pytest.raises(InputError, match=message):
        tiny_model.encode(batch)


def test_unknown_config_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown config name 'huge'.*tiny, small, large, xl, xxl"):
        get_config("huge")


def test_too_long_target_is_rejected(tiny_model, tiny_batch):
    enc = tiny_model.encode(tiny_batch)
    with pytest.raises(ValueError, match="image target has 65 tokens, more than the limit 64"):
        tiny_model.decode(enc, {"image": jnp.ones((2, 65), jnp.int32)})
