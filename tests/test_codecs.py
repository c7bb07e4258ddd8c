"""Action codecs: round trips within one bin, grammar paths always parse, fuzzed tokens stay in the space."""

import math

import gymnasium as gym
import numpy as np
import pytest

from envs.tabletop.spaces import action_space as vima_action_space
from policies.codecs import (
    POINTNAV_ACTION_WORDS,
    DiscreteActionCodec,
    VimaActionCodec,
    quaternion_from_yaw,
    yaw_from_quaternion,
)
from uio2_core.vocab import tiny_vocabulary

BIN_X, BIN_Y = 0.5 / 999, 1.0 / 999  # metres per location bin


@pytest.fixture(scope="module")
def vocab():
    return tiny_vocabulary()


def _random_vima_action(rng):
    return {
        "pose0_position": rng.uniform([0.25, -0.5], [0.75, 0.5]).astype(np.float32),
        "pose0_rotation": quaternion_from_yaw(rng.uniform(-math.pi, math.pi)),
        "pose1_position": rng.uniform([0.25, -0.5], [0.75, 0.5]).astype(np.float32),
        "pose1_rotation": quaternion_from_yaw(rng.uniform(-math.pi, math.pi)),
    }


def _yaw_diff(a, b):
    return abs((a - b + math.pi) % (2 * math.pi) - math.pi)


def test_vima_round_trip_within_one_bin(vocab):
    codec = VimaActionCodec(vocab)
    rng = np.random.default_rng(0)
    for step in range(0, 40, 3):
        action = _random_vima_action(rng)
        decoded = codec.decode([*codec.encode(action, step), 1], step)
        assert decoded.ok
        for pose in ("pose0", "pose1"):
            err = np.abs(decoded.action[f"{pose}_position"] - action[f"{pose}_position"])
            assert err[0] <= BIN_X + 1e-6 and err[1] <= BIN_Y + 1e-6
            yaw_err = _yaw_diff(yaw_from_quaternion(decoded.action[f"{pose}_rotation"]),
                                yaw_from_quaternion(action[f"{pose}_rotation"]))  # fmt: skip
            assert yaw_err <= 2 * math.pi / 999 + 1e-5


def test_vima_push_sentence_round_trips_and_wrong_step_falls_back(vocab):
    codec = VimaActionCodec(vocab)
    action = _random_vima_action(np.random.default_rng(1))
    ids = codec.encode(action, 4, push=True)
    assert codec.to_text(ids).startswith("5: push from (")
    assert codec.decode(ids, 4).ok
    assert not codec.decode(ids, 5).ok  # a sentence for another step is not this step's action


def _walk(dfa, rng, max_len=40):
    """A random path through the grammar automaton until EOS."""
    table = np.asarray(dfa.transitions)
    state, out = 0, []
    for _ in range(max_len):
        allowed = np.flatnonzero(table[state] >= 0)
        tok = int(rng.choice(allowed))
        out.append(tok)
        if tok == 1:
            break
        state = int(table[state, tok])
    return out


@pytest.mark.parametrize("family", ["vima", "pointnav"])
def test_every_grammar_path_parses(vocab, family):
    codec = VimaActionCodec(vocab) if family == "vima" else DiscreteActionCodec(vocab)
    rng = np.random.default_rng(2)
    for step in (0, 7, 11):
        dfa = codec.grammar(step)
        for _ in range(50):
            assert codec.decode(_walk(dfa, rng), step).ok


@pytest.mark.parametrize("family", ["vima", "pointnav"])
def test_fuzzed_tokens_always_give_an_action_in_the_space(vocab, family):
    codec = VimaActionCodec(vocab) if family == "vima" else DiscreteActionCodec(vocab)
    space = vima_action_space() if family == "vima" else gym.spaces.Discrete(4)
    rng = np.random.default_rng(3)
    template = codec.encode(_random_vima_action(rng), 2) if family == "vima" else codec.encode(1)
    ok = 0
    for i in range(10_000):
        if i % 2:  # random garbage of random length
            tokens = rng.integers(0, 33280, size=rng.integers(0, 30))
        else:  # a valid sentence with a few tokens mutated: near misses
            tokens = np.array([*template, 1])
            for j in rng.integers(0, len(tokens), size=rng.integers(1, 3)):
                tokens[j] = rng.integers(31990, 33010)
        decoded = codec.decode(tokens, 2)
        ok += decoded.ok
        assert space.contains(decoded.action), (tokens, decoded)
    assert ok < 10_000  # the fuzz does hit the fallback


def test_pointnav_words_and_errors(vocab):
    codec = DiscreteActionCodec(vocab)
    for a, word in enumerate(POINTNAV_ACTION_WORDS):
        assert codec.to_text(codec.encode(a)) == word
        assert codec.decode([*codec.encode(a), 1, 0, 0]) == (a, True)
    assert codec.decode([5, 6]) == (codec.fallback(), False)
    with pytest.raises(ValueError, match=r"outside 0\.\.3"):
        codec.encode(4)
    with pytest.raises(ValueError, match="missing"):
        VimaActionCodec(vocab).encode({"pose0_position": np.zeros(2)})
