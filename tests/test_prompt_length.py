"""Prompt length: the default text length is sized from the task, and a prompt that is still too long
loses its oldest history steps first (the instruction and the newest steps stay)."""

import logging

import numpy as np

from policies.history import EpisodeHistory
from policies.prompting import InputBuilder, pointnav_example
from uio2_core.vocab import tiny_vocabulary


def test_truncation_keeps_the_instruction_and_the_newest_steps(tiny_cfg, caplog):
    vocab = tiny_vocabulary()
    history = EpisodeHistory(4)
    for word in ("stop", "turn left", "turn right", "move forward"):
        history.push(np.zeros((8, 8, 3), np.uint8), word)
    goal = np.array([2.5, 0.3], np.float32)
    obs = {"rgb": np.zeros((8, 8, 3), np.uint8), "pointgoal_with_gps_compass": goal}
    ex = pointnav_example(obs, history, "stop, move forward, turn left, turn right")
    full = len(vocab.encode(ex.text)) + 1
    budget = len(vocab.encode(ex.shorten(2))) + 1  # room for the two newest steps only
    assert budget < full
    with caplog.at_level(logging.INFO):
        builder = InputBuilder(tiny_cfg, vocab, text_len=budget, max_frames=4)
        ids = builder.tokens(ex.text, ex.shorten, ex.steps)
    text = vocab.decode([int(i) for i in ids if i > 1])
    assert "Navigate to the goal 2.50 meters away" in text  # the instruction, whole
    assert "<image_history_4> move forward" in text and "<image_history_3> turn right" in text
    assert "<image_history_1>" not in text and "<image_history_2>" not in text
    assert "2 oldest history steps left out" in caplog.text


def test_default_text_len_fits_a_tabletop_prompt_with_full_history(tiny_model, caplog):
    from envs.tabletop import make_tabletop
    from policies.base import TaskSpec
    from policies.uio2_policy import UIO2Policy

    env = make_tabletop("rearrange_then_restore", render_mode=None)
    obs, info = env.reset(seed=0)
    policy = UIO2Policy(tiny_model, tiny_vocabulary(), max_frames=8)
    policy.reset(TaskSpec.from_env(env, info, seed=0))
    text_len = policy.builder.text_len
    assert text_len % 32 == 0 and text_len > 128  # 128 cut this task's prompt with history
    row = policy.rows[0]
    env.action_space.seed(0)
    for step in range(row.history.past_slots):  # every history slot filled with an action as decoded
        text = row.codec.to_text(row.codec.encode(env.action_space.sample(), step))
        row.history.push(np.zeros((8, 8, 3), np.uint8), text.split(": ", 1)[-1])
    with caplog.at_level(logging.INFO):
        ex = policy._example(row, obs)
        policy.builder.tokens(ex.text, ex.shorten, ex.steps)
    assert "left out" not in caplog.text and "truncated" not in caplog.text
    env.close()
