"""Image preprocessing in compiled code (`prepare_frames`) against the host numpy path.

The policy resizes, pads and normalises its frames on the device; the host path
(`preprocess_image_input`, numerics checked against TF / jax.image in test_preprocessing.py) is the
reference: equal within float32 rounding, identical patch masks, and the same actions from a policy
using either.
"""

import numpy as np
import pytest

from uio2_core import preprocessing as P
from uio2_core.device_preprocessing import checked_frame, prepare_frames, prepare_frames_np
from uio2_core.vocab import tiny_vocabulary


@pytest.mark.parametrize(
    ("h", "w", "size", "patch"),
    [(128, 128, 64, 8), (128, 256, 64, 8), (60, 40, 48, 16), (48, 48, 48, 8), (300, 200, 384, 16),
     (1, 7, 32, 8), (37, 23, 64, 8), (100, 200, 384, 16)],
)  # fmt: skip
def test_device_frames_equal_the_host_path(h: int, w: int, size: int, patch: int) -> None:
    rng = np.random.default_rng(h * w + size)
    frames = rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8)
    images, masks = prepare_frames(frames, size, patch)
    assert images.shape == (3, size, size, 3) and masks.shape == (3, (size // patch) ** 2)
    for k, frame in enumerate(frames):
        host = P.preprocess_image_input(frame, size, patch)
        np.testing.assert_allclose(np.asarray(images[k]), host.image, atol=3e-6, rtol=0)
        np.testing.assert_array_equal(np.asarray(masks[k]), host.mask.reshape(-1))
    # float input in [0, 1] is the same image
    floats, _ = prepare_frames(frames.astype(np.float32) / 255, size, patch)
    np.testing.assert_allclose(np.asarray(floats), np.asarray(images), atol=3e-6, rtol=0)


def test_frames_of_several_sizes_keep_their_order() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, s, dtype=np.uint8) for s in ((40, 60, 3), (60, 40, 3), (40, 60, 3))]
    images, masks = prepare_frames_np(frames, 48, 8)
    for k, frame in enumerate(frames):
        host = P.preprocess_image_input(frame, 48, 8)
        np.testing.assert_allclose(images[k], host.image, atol=3e-6, rtol=0)
        np.testing.assert_array_equal(masks[k], host.mask.reshape(-1))


@pytest.mark.parametrize(
    ("image", "exc", "match"),
    [
        (np.zeros((8, 8), np.uint8), ValueError, "HWC"),
        (np.zeros((8, 8, 4), np.uint8), ValueError, "channels"),
        (np.zeros((8, 8, 3), np.int32), TypeError, "dtype"),
        (np.full((8, 8, 3), np.nan, np.float32), ValueError, "NaN"),
        (np.full((8, 8, 3), 255.0, np.float32), ValueError, r"\[0, 1\]"),
        (np.zeros((0, 8, 3), np.uint8), ValueError, "empty"),
    ],
)
def test_bad_frames_raise_clear_errors(image: np.ndarray, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        checked_frame(image)


def _side_by_side(tiny_model, env_name: str, steps: int, **env_kwargs):
    """A device-preprocessing and a host-preprocessing policy act on the same observations."""
    import jax.numpy as jnp

    from agent.envs import resolve_env
    from policies.base import TaskSpec
    from policies.uio2_policy import UIO2Policy

    env = resolve_env(env_name, **env_kwargs)[0].make()
    obs, info = env.reset(seed=5)
    spec = TaskSpec.from_env(env, info, seed=5, env_id=env_name)
    common = dict(max_frames=3, text_len=96)
    device = UIO2Policy(tiny_model, tiny_vocabulary(), **common)
    host = UIO2Policy(tiny_model, tiny_vocabulary(), **common, device_preprocessing=False)
    plain = UIO2Policy(tiny_model, tiny_vocabulary(), **common, cache_inputs=False)  # frames on the device
    policies = (device, host, plain)
    for p in policies:
        p.reset(spec)
    try:
        for _ in range(steps):
            inputs = [p.model_inputs([p._example(p.rows[0], obs)]) for p in (device, host)]
            np.testing.assert_array_equal(inputs[0]["text"], inputs[1]["text"])
            np.testing.assert_array_equal(inputs[0]["image_mask"], inputs[1]["image_mask"])
            np.testing.assert_allclose(inputs[0]["image"], inputs[1]["image"], atol=3e-6, rtol=0)
            whole = plain.model_inputs([plain._example(plain.rows[0], obs)])
            reference = host.builder.collate([host._example(host.rows[0], obs)])
            np.testing.assert_array_equal(whole["image_history_mask"], reference["image_history_mask"])
            np.testing.assert_allclose(
                whole["image_history"], jnp.asarray(reference["image_history"]), atol=3e-6, rtol=0
            )
            actions = [p.act(obs) for p in policies]
            texts = [p.last_info["decoded_text"] for p in policies]
            assert texts[0] == texts[1] == texts[2]
            flat = [np.concatenate(list(a.values())) if isinstance(a, dict) else np.asarray(a)
                    for a in actions]  # fmt: skip
            np.testing.assert_array_equal(flat[0], flat[1])
            np.testing.assert_array_equal(flat[0], flat[2])
            obs, _, terminated, truncated, _ = env.step(actions[0])
            if terminated or truncated:
                break
    finally:
        env.close()


def test_pointnav_device_and_host_preprocessing_give_the_same_actions(tiny_model):
    _side_by_side(tiny_model, "pointnav", steps=3, width=40, height=32)


def test_tabletop_device_and_host_preprocessing_give_the_same_actions(tiny_model):
    _side_by_side(tiny_model, "tabletop/visual_manipulation", steps=2)
