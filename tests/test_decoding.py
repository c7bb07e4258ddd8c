"""Generation: constraints are obeyed, greedy == beam on a forced path, sampling is seeded, CFG, scoring."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uio2_core.constraints import PrefixConstraint, TokenDFA
from uio2_core.decoding import DecodeConfig, generate, score_options

LOC = range(32000, 33000)


def test_constrained_sampling_never_emits_a_disallowed_token(tiny_model, tiny_batch):
    slots = [100, LOC, [200, 201, 202], LOC]
    dfa = TokenDFA.from_slots(slots, 33280)
    out = generate(
        tiny_model,
        tiny_batch,
        "text",
        DecodeConfig(max_new_tokens=6, method="sample"),
        rng=jax.random.key(3),
        constraint=dfa,
    )
    toks = np.asarray(out.tokens)
    for row in toks:
        assert row[0] == 100
        assert 32000 <= row[1] < 33000 and 32000 <= row[3] < 33000
        assert row[2] in (200, 201, 202)
        assert row[4] == 1 and row[5] == 0  # EOS, then padding
    np.testing.assert_array_equal(out.length, [5, 5])


def test_unconstrained_sampling_differs_from_constrained(tiny_model, tiny_batch):
    """Guards the test above: without the constraint the model does not emit that template."""
    out = generate(
        tiny_model, tiny_batch, "text", DecodeConfig(max_new_tokens=6, method="sample"), rng=jax.random.key(3)
    )
    assert not np.all(np.asarray(out.tokens)[:, 0] == 100)


def test_greedy_and_beam_agree_on_a_forced_one_path_grammar(tiny_model, tiny_batch):
    path = [100, 32500, 200, 32001, 300]
    dfa = TokenDFA.from_slots(path, 33280)
    greedy = generate(tiny_model, tiny_batch, "text", DecodeConfig(max_new_tokens=7), constraint=dfa)
    beam = generate(
        tiny_model,
        tiny_batch,
        "text",
        DecodeConfig(max_new_tokens=7, method="beam", num_beams=3),
        constraint=dfa,
    )
    expected = np.array([[*path, 1, 0]] * 2)
    np.testing.assert_array_equal(greedy.tokens, expected)
    np.testing.assert_array_equal(beam.tokens, expected)
    np.testing.assert_allclose(greedy.log_prob, beam.log_prob, rtol=1e-4)


def test_beam_search_finds_at_least_the_greedy_likelihood(tiny_model, tiny_batch):
    dfa = TokenDFA.from_slots([LOC, LOC, LOC], 33280)
    cfg = DecodeConfig(max_new_tokens=4)
    greedy = generate(tiny_model, tiny_batch, "text", cfg, constraint=dfa)
    beam = generate(
        tiny_model,
        tiny_batch,
        "text",
        DecodeConfig(max_new_tokens=4, method="beam", num_beams=4),
        constraint=dfa,
    )
    assert np.all(np.asarray(beam.log_prob) >= np.asarray(greedy.log_prob) - 1e-4)


def test_greedy_log_prob_matches_teacher_forced_scoring(tiny_model, tiny_batch):
    out = generate(tiny_model, tiny_batch, "text", DecodeConfig(max_new_tokens=5, stop_at_eos=False))
    scores = score_options(tiny_model, tiny_batch, out.tokens[:, None, :])
    # score_options averages over non-padding tokens; greedy sums over all generated tokens
    assert np.all(np.asarray(out.tokens) != 0)  # (a PAD would be skipped by the scorer's average)
    n = np.asarray(out.tokens).shape[-1]
    np.testing.assert_allclose(np.asarray(scores)[:, 0] * n, out.log_prob, rtol=1e-4)
    assert np.all(np.asarray(out.length) == 5)


def test_prefix_constraint_hook_sees_the_prefix(tiny_model, tiny_batch):
    """A traceable function of the prefix: token t must be 50 + t, then EOS."""

    def allowed(prefix, step):
        ids = jnp.arange(33280)
        want = jnp.where(step < 3, 50 + step, 1)
        ok_prefix = jnp.all(
            jnp.where(jnp.arange(prefix.shape[1]) < step, prefix == 50 + jnp.arange(prefix.shape[1]), True),
            axis=1,
        )
        return (ids[None] == want) & ok_prefix[:, None] | ((ids[None] == 1) & ~ok_prefix[:, None])

    out = generate(
        tiny_model,
        tiny_batch,
        "text",
        DecodeConfig(max_new_tokens=5, method="sample"),
        rng=jax.random.key(0),
        constraint=PrefixConstraint(5, allowed),
    )
    np.testing.assert_array_equal(out.tokens, [[50, 51, 52, 1, 0]] * 2)


def test_sampling_is_deterministic_by_seed(tiny_model, tiny_batch):
    cfg = DecodeConfig(max_new_tokens=6, method="sample", top_p=0.9, stop_at_eos=False)
    a = generate(tiny_model, tiny_batch, "text", cfg, rng=jax.random.key(7))
    b = generate(tiny_model, tiny_batch, "text", cfg, rng=jax.random.key(7))
    c = generate(tiny_model, tiny_batch, "text", cfg, rng=jax.random.key(8))
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)


def test_image_generation_emits_only_codebook_tokens_with_guidance(tiny_model, tiny_batch):
    neg = {k: jnp.zeros_like(v) for k, v in tiny_batch.items()}
    cfg = DecodeConfig(max_new_tokens=16, method="sample", top_p=0.9, guidance_scale=3.0, stop_at_eos=False)
    out = generate(tiny_model, tiny_batch, "image", cfg, rng=jax.random.key(0), negative_batch=neg)
    toks = np.asarray(out.tokens)
    n_embed = tiny_model.cfg.image_vqgan.n_embed
    assert toks.shape == (2, 16) and toks.min() >= 2 and toks.max() < n_embed + 2
    # guidance 0 equals plain decoding
    g0 = generate(
        tiny_model,
        tiny_batch,
        "image",
        DecodeConfig(max_new_tokens=8, guidance_scale=0.0, stop_at_eos=False),
        negative_batch=neg,
    )
    plain = generate(tiny_model, tiny_batch, "image", DecodeConfig(max_new_tokens=8, stop_at_eos=False))
    np.testing.assert_array_equal(g0.tokens, plain.tokens)
    g5 = generate(
        tiny_model,
        tiny_batch,
        "image",
        DecodeConfig(max_new_tokens=8, guidance_scale=5.0, stop_at_eos=False),
        negative_batch=neg,
    )
    assert not np.array_equal(g5.tokens, plain.tokens)


def test_score_options_ranks_by_mean_log_likelihood(tiny_model, tiny_batch):
    greedy = generate(tiny_model, tiny_batch, "text", DecodeConfig(max_new_tokens=3, stop_at_eos=False))
    best = np.asarray(greedy.tokens)[0]
    worse = best.copy()
    worse[0] = 12345 if best[0] != 12345 else 12346
    options = jnp.asarray(np.stack([np.stack([worse, best])] * 2))
    scores = np.asarray(score_options(tiny_model, tiny_batch, options))
    assert scores.shape == (2, 2)
    assert scores[0, 1] > scores[0, 0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(method="nucleus"), "unknown decoding method"),
        (dict(top_p=0.0), "top_p"),
        (dict(temperature=0.0), "temperature"),
    ],
)
def test_bad_decode_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DecodeConfig(**kwargs)


def test_generate_argument_errors(tiny_model, tiny_batch):
    with pytest.raises(ValueError, match="needs a negative_batch"):
        generate(tiny_model, tiny_batch, "image", DecodeConfig(guidance_scale=2.0))
    with pytest.raises(ValueError, match="unknown target modality"):
        generate(tiny_model, tiny_batch, "video")
    with pytest.raises(ValueError, match="needs an rng"):
        generate(tiny_model, tiny_batch, "text", DecodeConfig(method="sample"))
    with pytest.raises(ValueError, match="slot 0 of alternative 0 allows no token"):
        TokenDFA.from_slots([[]], 33280)


def test_dfa_from_alternatives_is_a_trie_with_padding():
    dfa = TokenDFA.from_sequences([[5, 6], [5, 7, 8], [9]], 20, num_states=10)
    assert dfa.transitions.shape == (10, 20)
    state = dfa.init(1)
    assert set(np.flatnonzero(np.asarray(dfa.allowed(state)[0]))) == {5, 9}
    state = dfa.update(state, jnp.array([5]))
    assert set(np.flatnonzero(np.asarray(dfa.allowed(state)[0]))) == {6, 7}
    state = dfa.update(state, jnp.array([7]))
    state = dfa.update(state, jnp.array([8]))
    assert set(np.flatnonzero(np.asarray(dfa.allowed(state)[0]))) == {1}
    with pytest.raises(ValueError, match="overlaps"):
        TokenDFA.from_sequences([[[1, 2]], [[2, 3]]], 20)
    with pytest.raises(ValueError, match="more than num_states=2"):
        TokenDFA.from_sequences([[1, 2, 3]], 20, num_states=2)


def test_stacked_grammars_give_each_row_its_own_template(tiny_model, tiny_batch):
    dfa = TokenDFA.stack(
        [TokenDFA.from_slots([100, 101], 33280), TokenDFA.from_slots([200, 201, 202], 33280)]
    )
    for method in ("greedy", "beam"):
        cfg = DecodeConfig(max_new_tokens=5, method=method, num_beams=2)
        out = generate(tiny_model, tiny_batch, "text", cfg, constraint=dfa)
        np.testing.assert_array_equal(out.tokens, [[100, 101, 1, 0, 0], [200, 201, 202, 1, 0]])
