"""Audio-history latents: given instead of the clips (`audio_history_latents`), and kept per clip by
the UIO2 policy, so that a clip goes through the spectrogram, the AST and the perceiver once.

Cached policies (the fused device step, and the host path) act beside an uncached one on the same
audio PointNav observations and must agree: the same encoder inputs, the same decoded text.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from uio2_core.batch import InputError
from uio2_core.decoding import audio_history_latents, split_model
from uio2_core.vocab import tiny_vocabulary


def _embed(model, batch):
    graphdef, state = split_model(model)
    return jax.jit(lambda st, b: nnx.merge(graphdef, st).embed_inputs(b))(state, batch)


def test_audio_history_latents_embed_as_the_clips_do(tiny_model, tiny_batch):
    clips = tiny_batch["audio_history"]  # [2, 1, 256, 128, 1]
    masks = jnp.ones((2, 1, tiny_model.cfg.encoder_max_audio_length), bool).at[1].set(False)  # row 1: padding
    latents = audio_history_latents(tiny_model, clips.reshape(2, *clips.shape[2:]), masks.reshape(2, -1))
    ours = {k: v for k, v in tiny_batch.items() if k != "audio_history"}
    ours["audio_history_latents"] = latents[:, None]
    ours["audio_history_latents_mask"] = masks.any(-1)
    a, b = _embed(tiny_model, ours), _embed(tiny_model, {**tiny_batch, "audio_history_mask": masks})
    np.testing.assert_array_equal(a.mask, b.mask)
    valid = np.asarray(a.mask)
    assert not valid.all()  # row 1's clip is padding
    np.testing.assert_allclose(np.asarray(a.embed)[valid], np.asarray(b.embed)[valid], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda b: b.update(audio_history_latents=jnp.zeros((2, 1, 4, 64))),
            r"give either 'audio_history' \(clips\) or 'audio_history_latents', not both",
        ),
        (
            lambda b: b.update(audio_history=None, audio_history_latents=jnp.zeros((2, 1, 8, 64))),
            r"'audio_history_latents' must have shape \[B, Ta, 4, 64\]",
        ),
        (
            lambda b: b.update(audio_history=None, audio_history_latents_mask=jnp.ones((2, 1), bool)),
            "'audio_history_latents_mask' given without 'audio_history_latents'",
        ),
        (
            lambda b: b.update(audio_history=None, audio_history_latents=jnp.zeros((2, 9, 4, 64))),
            "'audio_history_latents' has 9 frames, more than the 8",
        ),
    ],
)
def test_bad_audio_history_latents_get_clear_errors(tiny_model, tiny_batch, change, message):
    batch = dict(tiny_batch)
    change(batch)
    batch = {k: v for k, v in batch.items() if v is not None}
    with pytest.raises(InputError, match=message):
        tiny_model.encode(batch)


def test_audio_pointnav_clips_are_encoded_once_to_the_same_latents_and_text(tiny_model):
    """Steps of an audio episode (one clip silent) by the fused device step, the host path and the
    fused step without the audio cache, beside an uncached policy."""
    from agent.envs import resolve_env
    from policies.base import TaskSpec
    from policies.uio2_policy import UIO2Policy

    env = resolve_env("pointnav-audio", width=32, height=32)[0].make()
    obs, info = env.reset(seed=1)
    spec = TaskSpec.from_env(env, info, seed=1, env_id="pointnav-audio")
    kw = dict(max_frames=2, text_len=96)
    vocab = tiny_vocabulary()
    cached = [
        UIO2Policy(tiny_model, vocab, **kw),
        UIO2Policy(tiny_model, vocab, **kw, device_preprocessing=False),
        UIO2Policy(tiny_model, vocab, **kw, cache_audio=False),
    ]
    plain = UIO2Policy(tiny_model, vocab, **kw, cache_inputs=False)
    for p in (*cached, plain):
        p.reset(spec)
    steps = 4  # two history slots: the oldest clips leave
    try:
        for step in range(steps):
            if step == steps - 2:
                obs = {**obs, "audio": np.zeros_like(obs["audio"])}  # a silent clip: masked out
            if step == steps - 1:  # a real clip (its latents from the last act) and the silent one
                clips = plain.builder.audio_arrays(plain._example(plain.rows[0], obs))  # what plain gives
                real = clips["audio_history_mask"].any(-1)
                assert real.tolist() == [True, False]
                want = audio_history_latents(
                    tiny_model, clips["audio_history"][:1], clips["audio_history_mask"][:1]
                )
                for p in cached[:2]:  # the latents they give (the silent clip's found here, not in act)
                    latents, valid = p._history_latents("audio_history")
                    np.testing.assert_array_equal(valid[0], real)
                    np.testing.assert_allclose(latents[0, 0], want[0], rtol=1e-5, atol=1e-5)
                assert cached[2].kept_histories == ("image_history",)
                off = cached[2].model_inputs([cached[2]._example(cached[2].rows[0], obs)])
                np.testing.assert_array_equal(off["audio_history"][0], clips["audio_history"])
            action = plain.act(obs)
            for p in cached:
                assert p.act(obs) == action and p.last_info["decoded_text"] == plain.last_info["decoded_text"]
            obs, *_ = env.step(1)  # forward, whatever was decided (a random model may stop)
    finally:
        env.close()
    for p in cached[:2]:  # each past clip once, in the step after it was heard
        assert p.audio_clips_encoded == steps - 1
        kept = p.rows[0].history.audio_latents
        assert len(kept) == 2 and kept[0] is not None and kept[1] is None  # the newest: next step
    assert cached[2].audio_clips_encoded == plain.audio_clips_encoded == 0
