"""Per-episode input caches of the UIO2 policy: prompt token ids kept, history latents computed once.

Cached and uncached policies (`cache_inputs=False`: everything tokenised, preprocessed and encoded
again every step) run side by side on the same observations and must agree: same token ids, the
same encoder inputs (within float tolerance), the same actions.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from uio2_core.decoding import split_model
from uio2_core.vocab import tiny_vocabulary


@pytest.mark.parametrize(
    "text",
    [
        "[Text] [S] Put the <image_history_1> into the <image_history_2>. Now.",
        "<image_history_1><image_history_2> a  <image_history_3>  b <extra_id_0> ",
        " lead <image_history_1> x <image_history_2>",
        "no special token at all",
    ],
)
def test_parts_cut_at_special_tokens_encode_to_the_whole(text):
    vocab = tiny_vocabulary()
    parts = vocab.split_at_specials(text)
    assert "".join(parts) == text
    assert [i for p in parts for i in vocab.encode(p)] == vocab.encode(text)


def _episode(tiny_model, env_name: str, steps: int, max_frames: int, **env_kwargs):
    """Both policies act on the same observations; yields (cached, uncached, obs, task) before each act."""
    from agent.envs import resolve_env
    from policies.base import TaskSpec
    from policies.prompting import InputBuilder
    from policies.uio2_policy import UIO2Policy

    env = resolve_env(env_name, **env_kwargs)[0].make()
    obs, info = env.reset(seed=3)
    spec = TaskSpec.from_env(env, info, seed=3, env_id=env_name)
    cached = UIO2Policy(tiny_model, tiny_vocabulary(), max_frames=max_frames, text_len=96)
    plain = UIO2Policy(tiny_model, tiny_vocabulary(), max_frames=max_frames, text_len=96, cache_inputs=False)
    cached.reset(spec)
    plain.reset(spec)
    short = InputBuilder(tiny_model.cfg, cached.vocab, 40)
    try:
        for _ in range(steps):
            yield cached, plain, obs, spec
            ours, theirs = cached._example(cached.rows[0], obs), plain._example(plain.rows[0], obs)
            np.testing.assert_array_equal(  # the same token ids every step, from kept parts or not
                cached.builder.tokens(ours.text, ours.shorten, ours.steps),
                plain.builder.tokens(theirs.text, theirs.shorten, theirs.steps),
            )
            np.testing.assert_array_equal(  # too long: the oldest steps left out, kept parts reused
                short.tokens(ours.text, ours.shorten, ours.steps),
                InputBuilder(tiny_model.cfg, plain.vocab, 40, cache_tokens=False).tokens(
                    theirs.text, theirs.shorten, theirs.steps
                ),
            )
            action = cached.act(obs)
            same = plain.act(obs)
            assert cached.last_info["decoded_text"] == plain.last_info["decoded_text"]
            np.testing.assert_array_equal(
                np.asarray(action if not isinstance(action, dict) else np.concatenate(list(action.values()))),
                np.asarray(same if not isinstance(same, dict) else np.concatenate(list(same.values()))),
            )
            obs, *_ = env.step(action)
    finally:
        env.close()


def _check_inputs(model, cached, plain, obs) -> None:
    ex = [cached._example(cached.rows[0], obs)]
    ours = {k: jnp.asarray(v) for k, v in cached.builder.collate(ex, without=("image_history",)).items()}
    ours["image_history_latents"], ours["image_history_latents_mask"] = cached._history_latents()
    ex = [plain._example(plain.rows[0], obs)]
    theirs = {k: jnp.asarray(v) for k, v in plain.builder.collate(ex).items()}
    np.testing.assert_array_equal(ours["text"], theirs["text"])  # the same token ids
    graphdef, state = split_model(model)
    embed = jax.jit(lambda st, batch: nnx.merge(graphdef, st).embed_inputs(batch))
    a, b = embed(state, ours), embed(state, theirs)
    np.testing.assert_array_equal(a.mask, b.mask)
    valid = np.asarray(a.mask)
    np.testing.assert_allclose(np.asarray(a.embed)[valid], np.asarray(b.embed)[valid], rtol=1e-5, atol=1e-5)


def test_pointnav_cached_history_gives_the_same_inputs_and_actions(tiny_model):
    seen = 0
    for cached, plain, obs, _ in _episode(tiny_model, "pointnav", steps=4, max_frames=2, width=32, height=32):
        if seen == 3:  # a full history that has dropped its oldest frame: kept latents stay aligned
            _check_inputs(tiny_model, cached, plain, obs)
        seen += 1
    history = cached.rows[0].history
    assert cached.frames_encoded == seen - 1  # each past frame through the ViT once, in the step after it
    # the frame just pushed gets its latents in the next step
    assert len(history.latents) == 2 and history.latents[0] is not None and history.latents[1] is None
    # the template's parts were tokenised once and kept (the goal's numbers change every step)
    assert len(cached.builder._ids) < 3 * seen


def test_tabletop_prompt_images_and_history_latents_are_kept_per_episode(tiny_model):
    episode = _episode(tiny_model, "tabletop/visual_manipulation", steps=2, max_frames=4)
    for step, (cached, plain, obs, spec) in enumerate(episode):  # noqa: B007 (spec: used after the loop)
        history = cached.rows[0].history
        if step == 1:
            prompt = list(history.prompt_latents)  # computed in the first step
            cached._history_latents()  # fills the latents of the frame seen so far
            kept = [id(x) for x in history.history_latents()]
    # the prompt images' and the past frame's latents were not computed again in the last act
    now = history.history_latents()
    assert len(prompt) >= 1 and None not in prompt and kept[: len(prompt)] == [id(x) for x in prompt]
    assert now[-1] is None and [id(x) for x in now[:-1]] == kept  # the newest frame: next step
    assert cached.frames_encoded == len(prompt) + 1  # the prompt images and the first frame, once each
    cached.reset_row(0, spec)
    assert all(x is None for x in cached.rows[0].history.history_latents())  # a new episode starts empty
