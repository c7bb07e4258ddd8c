"""Per-episode history: the last K frames, empty slots masked, prompt overflow tiled (never dropped)."""

import logging

import numpy as np
import pytest

from policies.history import EpisodeHistory, fit_prompt_images
from policies.prompting import Example, InputBuilder, vima_prompt_images
from uio2_core.vocab import tiny_vocabulary


def _frame(value: int, size: int = 20) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def test_long_episode_keeps_exactly_the_last_k_frames():
    h = EpisodeHistory(max_frames=3)
    for t in range(10):
        h.push(_frame(t), f"action {t}")
    assert [int(f[0, 0, 0]) for f in h.frames] == [7, 8, 9]
    assert list(h.actions) == ["action 7", "action 8", "action 9"]
    assert h.step == 10


def test_prompt_images_take_the_first_slots_and_past_frames_the_rest():
    h = EpisodeHistory(max_frames=4)
    h.reset([_frame(100), _frame(101)])
    for t in range(5):
        h.push(_frame(t), "a")
    assert [int(f[0, 0, 0]) for f in h.history_images()] == [100, 101, 3, 4]


def test_prompt_overflow_is_tiled_into_the_last_slot_with_a_warning(caplog):
    images = [_frame(i) for i in range(6)]
    with caplog.at_level(logging.WARNING):
        fitted = fit_prompt_images(images, 4)
    assert len(fitted) == 4 and "tiled" in caplog.text
    tile = fitted[-1]
    assert tile.shape == (40, 40, 3)  # 3 overflow images on a 2x2 grid
    assert {int(v) for v in np.unique(tile)} == {0, 3, 4, 5}


def test_empty_history_slots_are_masked_for_the_perceiver(tiny_cfg):
    builder = InputBuilder(tiny_cfg, tiny_vocabulary(), text_len=32, max_frames=4)
    ex = Example(text="[Text] [S] go", image=_frame(50, 64), history=[_frame(1, 30), _frame(2, 30)])
    arrays = builder.arrays(ex)
    assert arrays["image_history"].shape == (4, 48, 48, 3)
    frame_valid = arrays["image_history_mask"].any(axis=1)
    np.testing.assert_array_equal(frame_valid, [True, True, False, False])
    assert arrays["text"].shape == (32,) and arrays["text"][0] != 0
    with pytest.raises(ValueError, match="more than 4 slots"):
        builder.arrays(Example(text="x", image=_frame(1), history=[_frame(1)] * 5))


def test_vima_placeholders_become_history_references():
    assets = {n: {"rgb": {"front": np.full((3, 8, 16), i, np.uint8)}} for i, n in enumerate(["a", "b"])}
    text, images = vima_prompt_images("Put the {b} into the {a}, then {b}.", assets)
    assert text == "Put the <image_history_1> into the <image_history_2>, then <image_history_1>."
    assert [int(im[0, 0, 0]) for im in images] == [1, 0] and images[0].shape == (8, 16, 3)
    with pytest.raises(ValueError, match="no prompt asset"):
        vima_prompt_images("Put {c} here", assets)
