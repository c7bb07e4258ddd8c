"""Host-side decode speed-ups keep results identical: the cached model split, the grammar table
built once per step kind, jump-forward decoding over forced grammar runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from uio2_core import decoding
from uio2_core.constraints import TokenDFA
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


def test_vima_grammar_is_built_once_per_step_and_stays_on_the_device():
    from policies.codecs import VimaActionCodec
    from uio2_core.vocab import tiny_vocabulary

    codec = VimaActionCodec(tiny_vocabulary())
    g0 = codec.grammar(0)
    assert codec.grammar(0) is g0 and codec.grammar_builds == 1
    assert isinstance(g0.transitions, jax.Array)
    assert codec.grammar(3) is not g0 and codec.grammar_builds == 2
    # the decode length covers the longest sentence and its EOS
    assert codec.grammar_length(0) == len(codec.encode(codec.fallback(), 0)) + 1


def test_policy_builds_each_step_grammar_once_across_acts_and_episodes(tiny_model):
    from agent.envs import resolve_env
    from policies.base import TaskSpec
    from policies.uio2_policy import UIO2Policy
    from uio2_core.vocab import tiny_vocabulary

    policy = UIO2Policy(tiny_model, tiny_vocabulary(), max_frames=2, text_len=64)
    entry = resolve_env("tabletop/visual_manipulation")[0]
    envs = [entry.make() for _ in range(2)]
    texts = []
    for _episode in range(2):
        obs, specs = [], []
        for i, env in enumerate(envs):
            o, info = env.reset(seed=i)
            obs.append(o)
            specs.append(TaskSpec.from_env(env, info, seed=i, env_id="tabletop/visual_manipulation"))
        policy.reset_batch(specs)
        texts.append([])
        for _step in range(2):
            policy.act_batch(obs)
            texts[-1].append([policy.row_info(r)["decoded_text"] for r in range(2)])
    for env in envs:
        env.close()
    assert policy.codecs["vima"].grammar_builds == 2  # steps 0 and 1, not once per act or per row
    assert texts[0] == texts[1]  # the cached tables decode the same as the freshly built ones
    assert texts[0][0][0].startswith("1: ") and texts[0][1][0].startswith("2: ")


def test_one_decode_length_for_every_step_of_an_episode(tiny_model):
    """The policy decodes every step of an episode with one length, so its decoder compiles once: VIMA's
    step "10:" is a token longer than "9:", and a length per step compiled it again at step 10."""
    from agent.envs import resolve_env
    from policies.base import TaskSpec
    from policies.uio2_policy import UIO2Policy
    from uio2_core.vocab import tiny_vocabulary

    policy = UIO2Policy(tiny_model, tiny_vocabulary(), max_frames=2, text_len=64)
    env = resolve_env("tabletop/visual_manipulation")[0].make()
    _, info = env.reset(seed=0)
    policy.reset(TaskSpec.from_env(env, info, seed=0, env_id="tabletop/visual_manipulation"))
    env.close()
    codec, lengths = policy.codecs["vima"], set()
    assert codec.grammar_length(8) < codec.grammar_length(9)  # "9:" vs "10:": the case this is about
    for step in (0, 8, 9, 30):
        policy.rows[0].history.step = step
        _, length = policy._grammar()
        lengths.add(length)
        assert length >= codec.grammar_length(step)  # room for the step's longest sentence and EOS
    assert len(lengths) == 1


def _free_positions(dfa: TokenDFA, row_start: int, tokens) -> set[int]:
    """Positions of a row's decoded tokens that the grammar did not force (more than one allowed),
    and its EOS (the call that ends the row)."""
    table, state, free = np.asarray(dfa.transitions), row_start, set()
    for pos, t in enumerate(np.asarray(tokens).tolist()):
        if ((table[state] >= 0) & (np.arange(table.shape[1]) != 0)).sum() > 1:
            free.add(pos)
        state = table[state, t]
        if t == 1:
            free.add(pos)
            break
    return free


@pytest.mark.parametrize("kind", ["vima", "vima-mixed-steps", "free"])
def test_jump_forward_gives_token_by_token_results_with_fewer_calls(tiny_model, tiny_batch, kind):
    from policies.codecs import VimaActionCodec
    from uio2_core.vocab import tiny_vocabulary

    codec = VimaActionCodec(tiny_vocabulary())
    # rows at different step numbers; "11" has more tokens than "1": forced runs out of step
    steps = (0, 11) if kind == "vima-mixed-steps" else (0, 5)
    dfa = TokenDFA.stack([codec.grammar(s) for s in steps])
    starts, n = np.asarray(dfa.row_starts), 40  # longer than a sentence: stop at EOS, not run on
    if kind == "free":  # one looping state that allows every real token (never forced); the VIMA
        table = np.full(dfa.transitions.shape, -1, np.int32)  # table's shape: one compile for all
        table[0, 1:] = 0
        dfa = TokenDFA(jax.numpy.asarray(table), jax.numpy.zeros(2, jax.numpy.int32))
    slow, fast = (
        generate(tiny_model, tiny_batch, "text", DecodeConfig(n, jump_forward=j), constraint=dfa)
        for j in (0, 8)
    )
    np.testing.assert_array_equal(np.asarray(fast.tokens), np.asarray(slow.tokens))
    np.testing.assert_array_equal(np.asarray(fast.length), np.asarray(slow.length))
    np.testing.assert_allclose(np.asarray(fast.log_prob), np.asarray(slow.log_prob), rtol=1e-4)
    if kind == "free":
        assert int(fast.calls) == int(slow.calls) == max(np.asarray(slow.length))
        return
    rows = np.asarray(fast.tokens)
    free = set().union(*(_free_positions(dfa, s, row) for s, row in zip(starts, rows, strict=True)))
    assert all(codec.decode(row, s).ok for row, s in zip(rows, steps, strict=True))
    # one call per free position or EOS (any row's); token by token: one call per token
    assert int(fast.calls) <= len(free) < int(slow.calls) == max(np.asarray(slow.length))
    if kind == "vima":
        assert len(free) == 8  # the verb, six location tokens, EOS: the "free tokens + 1"


def test_beams_sharing_the_encoder_output_match_the_k_fold_copies(tiny_model, tiny_batch):
    """Beam search without k copies of the encoder output and cross keys/values: same beams."""
    loc = range(32000, 33000)  # location bins: the beams have real choices to make
    dfa = TokenDFA.from_slots([loc, loc, loc], 33280)
    cfg = DecodeConfig(max_new_tokens=4, method="beam", num_beams=4)
    shared = generate(tiny_model, tiny_batch, "text", cfg, constraint=dfa)
    old = DecodeConfig(**{**cfg.__dict__, "beam_share_encoder": False})
    copies = generate(tiny_model, tiny_batch, "text", old, constraint=dfa)
    np.testing.assert_array_equal(shared.tokens, copies.tokens)
    np.testing.assert_array_equal(shared.length, copies.length)
    np.testing.assert_allclose(shared.log_prob, copies.log_prob, rtol=1e-5, atol=1e-5)

    # the cache holds one copy of the cross keys/values per row, k of the self-attention rows
    def cache():
        enc = tiny_model.encode(tiny_batch)
        return tiny_model.decoder.init_cache(enc.encoded, enc.rope, 4, beams=4)[0]

    layer = jax.eval_shape(cache)  # traced, not run
    assert layer["cross_k"].shape[0] == 2 and layer["k"].shape[0] == 8


def _loop_body_writes(hlo: str) -> list[tuple[str, list[int]]]:
    """(instruction, result shape) for every top-level instruction of the while loops' bodies
    in an optimised HLO module (fusion insides are separate computations and not listed)."""
    import re

    bodies = set(re.findall(r"\bwhile\(.*?body=%?([\w.\-]+)", hlo))
    out, current = [], None
    for line in hlo.splitlines():
        head = re.match(r"^%?([\w.\-]+) .*\{$", line)
        if head and not line.startswith(" "):
            current = head.group(1)
            continue
        m = re.match(r"\s+(?:ROOT )?%?([\w.\-]+) = \w+\[([\d,]*)\]\S* (\S+)\(", line)
        if current in bodies and m and m.group(3) not in ("parameter", "get-tuple-element", "bitcast"):
            dims = [int(d) for d in m.group(2).split(",") if d]
            out.append((f"{m.group(1)} {m.group(3)}", dims))
    return out


def _decode_loop_writes_over_positions(model, batch) -> list:
    """Instructions of a compiled 4-step decode loop that write an array over the encoder
    positions as large as half a row's cross K of one layer."""
    import jax.numpy as jnp

    graphdef, state = nnx.split(model)
    enc = model.encode(batch)
    cache = model.init_cache(enc, "text", 4)

    @jax.jit
    def decode(state, enc, cache):
        m = nnx.merge(graphdef, state)

        def body(i, carry):
            logits, cache = m.decode_step(enc, "text", carry[0], i, carry[1])
            return jnp.argmax(logits, -1).astype(jnp.int32), cache

        return jax.lax.fori_loop(0, 4, body, (jnp.zeros((2,), jnp.int32), cache))[0]

    writes = _loop_body_writes(decode.lower(state, enc, cache).compile().as_text())
    assert any("dot" in name for name, _ in writes)  # the parse found the loop body
    t = model.cfg.transformer
    length = enc.encoded.shape[1]
    assert length not in (t.num_heads, t.head_dim, 2)
    half_row = t.num_heads * t.head_dim * length // 2
    return [(name, dims) for name, dims in writes if length in dims and np.prod(dims) >= half_row]


def test_a_decode_step_reads_the_cross_keys_and_values_in_place(tiny_model):
    """The decode cache keeps keys/values in the layout a step's dot reads them in
    ([B, H, D, L]): nothing in the compiled loop rewrites the cross keys/values, whereas laid out
    as [B, L, H, D] they were transposed whole at every step and layer. Same tokens either way."""
    from uio2_core import transformer

    rng = np.random.default_rng(0)  # text only (a cheap encoder), 37 positions: a distinct length
    batch = {"text": jax.numpy.asarray(rng.integers(3, 32000, size=(2, 37)), jax.numpy.int32)}
    cfg = DecodeConfig(max_new_tokens=6, stop_at_eos=False)
    new = generate(tiny_model, batch, "text", cfg)
    assert _decode_loop_writes_over_positions(tiny_model, batch) == []
    transformer.CACHE_LAYOUT_FOR_DOT = False
    try:
        assert len(_decode_loop_writes_over_positions(tiny_model, batch)) >= 2  # K and V
        jax.clear_caches()  # the generate compiled above traced the other layout
        old = generate(tiny_model, batch, "text", cfg)
    finally:
        transformer.CACHE_LAYOUT_FOR_DOT = True
        jax.clear_caches()
    np.testing.assert_array_equal(np.asarray(new.tokens), np.asarray(old.tokens))
    np.testing.assert_allclose(np.asarray(new.log_prob), np.asarray(old.log_prob), rtol=1e-5)


def _step_logits(model, batch, weights, steps: int = 3):
    """Logits of `steps` cached decode steps (feeding token 5 each time), with `weights` packed or None."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, weights, batch):
        m = decoding.use_step_weights(nnx.merge(graphdef, state), weights, "text")
        enc = m.encode(batch)
        cache, out = m.init_cache(enc, "text", steps), []
        for i in range(steps):
            logits, cache = m.decode_step(enc, "text", jnp.full((2,), 5, jnp.int32), jnp.int32(i), cache)
            out.append(logits)
        return jnp.stack(out, 1)

    return np.asarray(run(state, weights, batch))


def test_packed_step_weights_give_the_same_logits_and_tokens(tiny_model, tiny_batch):
    from types import SimpleNamespace

    packed = decoding.step_weights(tiny_model, "text", True)
    assert decoding.step_weights(tiny_model, "text", False) is None
    width = lambda d: SimpleNamespace(cfg=SimpleNamespace(transformer=SimpleNamespace(d_model=d)))  # noqa: E731
    on_cpu = jax.default_backend() == "cpu"
    assert DecodeConfig().packs(width(1024)) == on_cpu and not DecodeConfig().packs(width(64))  # wide only
    assert not DecodeConfig(packed_weights=False).packs(width(1024)) and DecodeConfig(
        packed_weights=True
    ).packs(width(64))
    assert packed.layers[0]["self_attention.qkv"].shape == (3 * 64, 64)  # q|k|v, transposed [out, in]
    plain, fast = _step_logits(tiny_model, tiny_batch, None), _step_logits(tiny_model, tiny_batch, packed)
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-5)
    assert np.abs(plain).max() > 1.0  # not a vacuous comparison
    from policies.codecs import VimaActionCodec
    from uio2_core.vocab import tiny_vocabulary

    codec = VimaActionCodec(tiny_vocabulary())
    grammar = TokenDFA.stack([codec.grammar(0)] * 2)
    for cfg, kw in (
        (DecodeConfig(codec.grammar_length(0)), {"constraint": grammar}),  # jump-forward, 8-position calls
        (DecodeConfig(6, method="beam", num_beams=3), {}),
        (DecodeConfig(6, method="sample", temperature=5.0), {"rng": jax.random.key(3)}),
    ):
        a = generate(
            tiny_model, tiny_batch, "text", DecodeConfig(**{**cfg.__dict__, "packed_weights": True}), **kw
        )
        b = generate(
            tiny_model, tiny_batch, "text", DecodeConfig(**{**cfg.__dict__, "packed_weights": False}), **kw
        )
        np.testing.assert_array_equal(np.asarray(a.tokens), np.asarray(b.tokens))
        np.testing.assert_allclose(np.asarray(a.log_prob), np.asarray(b.log_prob), rtol=1e-5, atol=1e-4)


def test_packed_weights_are_made_once_and_again_after_a_parameter_update(tiny_cfg, tiny_batch):
    from uio2_core.model import build_model

    model = build_model(tiny_cfg, seed=2, with_vqgan=False)  # mutated below: not the shared fixture
    first = decoding.step_weights(model, "text", True)
    assert decoding.step_weights(model, "text", True) is first  # kept, not packed per call
    kernel = model.decoder.layers_0.mlp.wi_1.kernel
    nnx.update(model, nnx.State({"decoder": {"layers_0": {"mlp": {"wi_1": {"kernel": 3 * kernel[...]}}}}}))
    again = decoding.step_weights(model, "text", True)
    assert again is not first
    np.testing.assert_allclose(
        _step_logits(model, tiny_batch, again), _step_logits(model, tiny_batch, None), rtol=1e-5, atol=1e-5
    )
    assert not np.allclose(_step_logits(model, tiny_batch, first), _step_logits(model, tiny_batch, again))
