"""Tabletop learning: softened location targets, location-error metrics, and training inputs that are
token for token the policy's."""

import jax.numpy as jnp
import numpy as np
import pytest

from policies.codecs import VimaActionCodec
from training.location_metrics import location_bins, summarize
from training.objective import token_losses
from uio2_core.vocab import location_token, tiny_vocabulary


def _peaked(bin_: int, vocab_size: int = 33280) -> jnp.ndarray:
    """Logits of a guess spread over the bins around `bin_` (width 10 bins)."""
    logits = np.full((1, 1, vocab_size), -30.0, np.float32)
    bins = np.arange(1000)
    logits[0, 0, [location_token(b) for b in bins]] = -0.5 * ((bins - bin_) / 10) ** 2
    return jnp.asarray(logits)


def test_location_sigma_makes_a_near_miss_cheaper_than_a_far_one():
    target = jnp.asarray([[location_token(500)]])
    near, far = _peaked(503), _peaked(900)
    hard_near, hard_far = (float(token_losses(lg, target, 0.0)[0][0, 0]) for lg in (near, far))
    soft_near, soft_far = (
        float(token_losses(lg, target, 0.0, location_sigma=10.0)[0][0, 0]) for lg in (near, far)
    )
    assert hard_near < hard_far
    assert soft_near < 0.01 * soft_far  # 3 bins off costs next to nothing, 400 off costs as before
    assert soft_far == pytest.approx(hard_far, rel=0.05)
    # the reported cross-entropy stays the hard one, and non-location targets are untouched
    assert float(token_losses(near, target, 0.0, location_sigma=10.0)[1][0, 0]) == pytest.approx(hard_near)
    word = jnp.asarray([[5]])
    assert float(token_losses(near, word, 0.0, 10.0)[0][0, 0]) == pytest.approx(
        float(token_losses(near, word, 0.0)[0][0, 0])
    )


def test_location_error_in_bins_and_metres():
    codec = VimaActionCodec(tiny_vocabulary())
    ident = np.array([0, 0, 0, 1.0])
    action = {"pose0_position": np.array([0.5, 0.0], np.float32), "pose0_rotation": ident,
              "pose1_position": np.array([0.3, -0.4], np.float32), "pose1_rotation": ident}  # fmt: skip
    bins = location_bins(np.asarray(codec.encode(action)))
    true = bins[bins >= 0][None]
    assert true.shape == (1, 6)
    pred = true.copy()
    pred[0, 0] += 38  # pick x: 38 bins = 0.019 m (x spans 0.5 m over 999 bin widths)
    pred[0, 4] -= 30  # place y: 30 bins = 0.03 m (y spans 1.0 m)
    s = summarize(true, pred)
    assert s["pick_x_bins"] == 38 and s["place_y_bins"] == 30 and s["pick_y_bins"] == 0
    assert s["pick_m"] == pytest.approx(0.019, abs=1e-4) and s["place_m"] == pytest.approx(0.03, abs=1e-3)
    assert s["pick_within_2cm"] == 1.0 and s["place_within_2cm"] == 0.0


def test_training_inputs_are_the_policys_token_for_token(tmp_path, view="top", crop=True):
    """A recorded tabletop step, built by training's ExampleBuilder, equals what the policy builds
    for the same seed's first step: text ids, main image, prompt/history frames and their masks."""
    from agent.cli import main
    from envs.tabletop import make_tabletop
    from policies.base import TaskSpec
    from policies.uio2_policy import UIO2Policy
    from training.data import ExampleBuilder, TrainingData
    from training.dataset import open_dataset
    from uio2_core.config import get_config
    from uio2_core.model import build_model

    out = tmp_path / "data"
    argv = ["collect", "--env", "tabletop/rotate", "--policy", "oracle", "--episodes", "1", "--seed", "7"]
    assert main([*argv, "--out", str(out)]) == 0
    cfg, vocab = get_config("tiny"), tiny_vocabulary()
    ds = open_dataset(out)
    builder = ExampleBuilder(cfg, vocab, view=view, prompt_crop=crop)
    trained = builder.episode(ds.episode(0), ds.episode_extra(0), "vima").inputs

    env = make_tabletop("rotate")
    obs, info = env.reset(seed=7)
    policy = UIO2Policy(build_model(cfg, seed=0, with_vqgan=False), vocab, text_len=128, max_frames=4,
                        view=view, prompt_crop=crop)  # fmt: skip
    policy.reset(TaskSpec.from_env(env, info, seed=7))
    example = policy._example(policy.rows[0], obs)
    seen = policy.builder.arrays(example)
    acted = policy.model_inputs([example])  # what act feeds the model (main image prepared on the device)
    env.close()
    for key in ("text", "image", "image_mask"):
        np.testing.assert_array_equal(trained[key][0], np.asarray(acted[key][0]), err_msg=key)
    assert sorted(seen) == sorted(trained)
    for key, value in seen.items():
        np.testing.assert_array_equal(trained[key][0], value, err_msg=key)
    assert (seen["image_history_mask"].sum(-1) > 0).sum() == 1  # rotate's prompt shows one object
    # what training actually samples (the indexed steps) is the same as well: --prompt-crop included
    indexed, _ = TrainingData([str(out)], builder, 1).example(0, 0)
    assert sorted(indexed) == sorted(seen)
    for key, value in seen.items():
        np.testing.assert_array_equal(indexed[key], value, err_msg=f"indexed {key}")


def test_video_caption_shows_the_prompt_images():
    """The tabletop GIF's caption band carries the prompt's object images (cropped to the object)."""
    from agent.video import caption_frames
    from policies.prompting import crop_to_object

    asset = np.full((128, 256, 3), 255, np.uint8)
    asset[60:70, 120:130] = (0, 200, 0)  # a small green object in a white frame, as prompt assets are
    crop = crop_to_object(asset)
    assert crop.shape[0] == crop.shape[1] and 10 <= crop.shape[0] <= 20 and (crop[..., 1] == 200).any()
    frames = [np.zeros((128, 256, 3), np.uint8)] * 2
    plain = caption_frames(frames, "Put the {dragged_obj_1} into the {base_obj}.")
    shown = caption_frames(frames, "Put the {dragged_obj_1} into the {base_obj}.",
                           prompt_images=[("dragged_obj_1", crop), ("base_obj", crop)])  # fmt: skip
    assert shown[0].shape[0] > plain[0].shape[0] and shown[0].shape[1] == plain[0].shape[1]
    band = shown[0][128:]
    assert ((band[..., 1] == 200) & (band[..., 0] == 0)).sum() > 100  # the green object, scaled up


def test_train_vit_lets_gradients_reach_the_image_vit():
    """UIO2 stops gradients at its (frozen) ViT's features; `train_vit` (what `uio2 train` sets when
    training from a config) lets them through, for the main image and the history frames, without
    changing the forward pass."""
    import jax
    from flax import nnx

    from uio2_core.config import get_config
    from uio2_core.model import build_model

    net = build_model(get_config("tiny"), seed=0, with_vqgan=False)
    emb = net.input_embedders
    image = jax.random.uniform(jax.random.key(0), (1, 64, 64, 3))
    frames = jax.random.uniform(jax.random.key(1), (2, 48, 48, 3))

    def grad_norms() -> tuple[float, float, float]:
        def main_loss(e):
            return e.image(image, None).embed.sum()

        def hist_loss(e):
            return e.image_history.frame_latents(frames, None, e.image.vit).sum()

        g_main = nnx.grad(main_loss)(emb)
        g_hist = nnx.grad(hist_loss)(emb)
        vit_main = jax.tree_util.tree_leaves(nnx.state(g_main.image.image_encoder))
        vit_hist = jax.tree_util.tree_leaves(nnx.state(g_hist.image.image_encoder))
        proj = jax.tree_util.tree_leaves(nnx.state(g_main.image.projection))
        norm = lambda leaves: float(sum(jnp.abs(x).sum() for x in leaves))  # noqa: E731
        return norm(vit_main), norm(vit_hist), norm(proj)

    before = emb.image(image, None).embed
    assert grad_norms()[:2] == (0.0, 0.0) and grad_norms()[2] > 0
    emb.image.train_vit = emb.image_history.train_vit = True
    main, hist, _ = grad_norms()
    assert main > 0 and hist > 0
    np.testing.assert_array_equal(np.asarray(emb.image(image, None).embed), np.asarray(before))


def test_grid_positions_make_neighbouring_patches_alike():
    """`uio2 train --grid-positions`: the ViT's patch-position rows become 2D sinusoids of the grid
    (near patches alike, far ones not, every row distinct, as large as a patch's content); the CLS
    row is kept."""
    from training.run import grid_vit_positions
    from uio2_core.config import get_config
    from uio2_core.model import build_model

    net = build_model(get_config("small8"), seed=0, with_vqgan=False)
    vit = net.input_embedders.image.vit
    before = np.asarray(vit.positional_embedding[...]).copy()
    grid_vit_positions(net)
    table = np.asarray(vit.positional_embedding[...])
    np.testing.assert_array_equal(table[0], before[0])
    g = vit.cfg.pretrain_grid
    assert g == 16 and vit.cfg.patch_size == 8
    rows = table[1:].reshape(g, g, -1)

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    # half of a row is its grid row's code, half its column's: patches in one row share the first half
    assert cos(rows[5, 5], rows[5, 6]) > 0.6 and cos(rows[5, 5], rows[6, 5]) > 0.6
    assert cos(rows[5, 5], rows[5, 6]) > cos(rows[5, 5], rows[5, 12]) + 0.2
    assert cos(rows[0, 0], rows[15, 15]) < 0.2
    flat = table[1:]
    dist = np.linalg.norm(flat[:, None] - flat[None], axis=-1) + np.eye(len(flat))
    assert dist.min() > 0.1
    assert 0.5 < float(np.sqrt((flat**2).mean())) < 1.0
