"""Image / audio masked denoising ([Image] [R], [Audio] [R]) and mixing denoisers into `uio2 train`."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from training.denoising_sources import parse_denoise
from training.masked_denoising import (
    PREFIX_IDS,
    MaskedDenoisingData,
    audio_items,
    hide_patches,
    image_items,
)
from training.mixture import MixtureData
from training.optimizer import OptimizerConfig
from training.trainer import TrainConfig, Trainer
from uio2_core.audio_vqgan import AudioVQGAN
from uio2_core.image_vqgan import ImageVQGAN
from uio2_core.model import build_model
from uio2_core.preprocessing import preprocess_image_target
from uio2_core.vocab import EOS_ID


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    out = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)]  # not square: padding
    out[1][:] = 0
    out[1][:, :32] = 255  # half white, half black
    return out


@pytest.fixture(scope="module")
def image_vqgan(tiny_cfg):
    return ImageVQGAN(tiny_cfg.image_vqgan, rngs=nnx.Rngs(0))


def test_prefix_tokens_are_uio2s():
    assert PREFIX_IDS == {"image": 33222, "audio": 33224}  # reference section 2: the released vocabulary


def test_hide_patches_hides_the_rate_of_valid_patches_only():
    rng = np.random.default_rng(0)
    valid = np.array([True] * 12 + [False] * 4)
    keep = hide_patches(valid, 0.5, rng)
    assert keep.sum() == 6 and not keep[12:].any()
    assert hide_patches(np.array([True, True]), 0.99, rng).sum() == 1  # always one kept
    assert hide_patches(np.array([True, False]), 0.5, rng).tolist() == [True, False]


def test_image_targets_are_the_vqgan_tokens_of_the_whole_image(tiny_cfg, images, image_vqgan):
    items = image_items(images, tiny_cfg, image_vqgan)
    g = tiny_cfg.image_vqgan.grid
    assert items.targets.shape == (3, g * g) and items.inputs.shape == (3, 64, 64, 3)
    size = tiny_cfg.image_vqgan.resolution
    want = image_vqgan.encode_to_ids(preprocess_image_target(images[0], size, size // g).image[None])
    np.testing.assert_array_equal(items.targets[0], np.asarray(want[0]) + 2)
    # a 48x64 image is padded top and bottom: the target mask leaves the padding rows out
    assert 0 < items.target_mask[0].sum() < g * g and items.target_mask[0].reshape(g, g)[g // 2].all()
    assert not items.valid[0].all() and items.valid[0].any()


def test_batches_hide_patches_and_are_deterministic(tiny_cfg, images, image_vqgan):
    data = MaskedDenoisingData(image_items(images, tiny_cfg, image_vqgan), batch_size=4, rate=0.5, seed=3)
    a, b, c = data.batch_at(7), data.batch_at(7), data.batch_at(8)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["image_mask"], c["image_mask"])
    assert (a["text"][:, :2] == [PREFIX_IDS["image"], EOS_ID]).all() and not a["text"][:, 2:].any()
    assert set(a) == {"text", "image", "image_mask", "targets/image", "targets/image_mask"}
    valid = data.items.valid
    for row, keep in enumerate(a["image_mask"]):
        full = next(v for v in valid if (keep <= v).all() and v.sum() > keep.sum())  # keep is within it
        assert keep.sum() == full.sum() - round(0.5 * full.sum()), row
    with pytest.raises(ValueError, match="rate"):
        MaskedDenoisingData(data.items, 2, rate=1.0)


def test_hidden_patches_are_invisible_to_the_encoder(tiny_cfg, tiny_model, images, image_vqgan):
    data = MaskedDenoisingData(image_items(images, tiny_cfg, image_vqgan), batch_size=2, seed=0)
    batch = data.batch_at(0)
    inputs = {k: batch[k] for k in ("text", "image", "image_mask")}
    changed = dict(inputs, image=inputs["image"].copy())
    p = tiny_cfg.image_vit.patch_size
    g = tiny_cfg.image_grid
    for b in range(2):
        for i in np.flatnonzero(~inputs["image_mask"][b]):
            y, x = divmod(int(i), g)
            changed["image"][b, y * p : (y + 1) * p, x * p : (x + 1) * p] = 5.0  # scribble on hidden patches
    a, c = tiny_model.encode(inputs), tiny_model.encode(changed)
    valid = np.asarray(a.mask)
    np.testing.assert_array_equal(np.asarray(a.encoded)[valid], np.asarray(c.encoded)[valid])
    shown = dict(changed, image_mask=np.ones_like(inputs["image_mask"]))
    assert not np.allclose(np.asarray(tiny_model.encode(shown).encoded), np.asarray(a.encoded))


def test_training_on_masked_image_denoising_lowers_the_loss(tiny_cfg, images, image_vqgan):
    data = MaskedDenoisingData(image_items(images[:2], tiny_cfg, image_vqgan), batch_size=2, seed=0)
    cfg = TrainConfig(steps=25, optimizer=OptimizerConfig(learning_rate=3e-2, warmup_steps=2))
    history = Trainer(build_model(tiny_cfg, with_vqgan=False), cfg).fit(data.batch_at, progress=False)
    assert all(np.isfinite(h["loss"]) for h in history) and "image_ce" in history[0]
    assert np.mean([h["loss"] for h in history[-5:]]) < 0.7 * np.mean([h["loss"] for h in history[:3]])


def test_audio_items_and_a_training_step(tiny_cfg):
    vqgan = AudioVQGAN(tiny_cfg.audio_vqgan, rngs=nnx.Rngs(0))
    t = np.arange(16000 * 2) / 16000
    items = audio_items([0.3 * np.sin(2 * np.pi * 440 * t), np.zeros(100)], tiny_cfg, vqgan)
    gm, gt = tiny_cfg.audio_vqgan.grid
    assert items.targets.shape == (2, gm * gt) and items.inputs.shape == (2, 256, 128, 1)
    # 2 s of a 4.08 s segment: the first half of the time-major tokens cover sound, the rest padding
    mask = items.target_mask[0].reshape(gt, gm)
    assert mask[: gt // 2 - 1].all() and not mask[gt // 2 + 1 :].any()
    batch = MaskedDenoisingData(items, batch_size=2, seed=0).batch_at(0)
    assert batch["text"][0, 0] == PREFIX_IDS["audio"] and batch["audio_mask"].shape == (2, 128)
    trainer = Trainer(build_model(tiny_cfg, with_vqgan=False), TrainConfig(steps=1))
    metrics = trainer.step(batch)
    assert np.isfinite(metrics["loss"]) and "audio_ce" in metrics


def test_mixture_is_deterministic_and_follows_the_weights():
    mix = MixtureData([lambda p: {"k": 0}, lambda p: {"k": 1}], [0.8, 0.2], seed=1)
    picks = [mix.batch_at(p)["k"] for p in range(2000)]
    assert picks == [mix.batch_at(p)["k"] for p in range(2000)]
    assert 0.17 < np.mean(picks) < 0.23
    with pytest.raises(ValueError, match="weights"):
        MixtureData([lambda p: {}], [0.0])


def test_parse_denoise_names_the_problem():
    assert parse_denoise("image:0.2, text:0.1") == {"image": 0.2, "text": 0.1}
    assert parse_denoise(None) == {}
    for bad, match in (("video:0.1", "KIND"), ("image", "KIND"), ("image:x", "number"),
                       ("image:1.5", r"\(0, 1\)"), ("image:0.6,text:0.5", "no steps")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            parse_denoise(bad)


def test_uio2_train_mixes_denoisers_into_the_task_data(tmp_path, tiny_cfg):
    from agent.cli import main
    from training.dataset import open_dataset
    from training.denoising import PREFIX_IDS as TEXT_PREFIX_IDS
    from training.denoising_sources import _evenly, _image_key, denoising_sources
    from training.run import train
    from uio2_core.vocab import tiny_vocabulary

    data = tmp_path / "data"
    argv = ["collect", "--env", "pointnav", "--policy", "oracle", "--episodes", "2", "--seed", "0",
            "--out", str(data), "--env.width=32", "--env.height=32", "--env.max_episode_steps=8"]  # fmt: skip
    assert main(argv) == 0
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--model", "tiny", "--steps", "5", "--batch-size", "2",
            "--out", str(run), "--denoise", "image:0.5"]  # fmt: skip
    assert main(argv) == 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 5  # with seed 0, steps 3 and 4 are image denoising, the rest the task
    assert ["image_ce" in m for m in lines] == [False, False, False, True, True]
    assert json.loads((run / "run.json").read_text())["train"]["denoise"] == {"image": 0.5}
    assert (run / "model.json").is_file()

    # the text paradigms run on the datasets' prompts; audio needs audio observations
    datasets, vocab = [open_dataset(data)], tiny_vocabulary()
    ((text_batches, frac),) = denoising_sources({"text": 0.1}, datasets, tiny_cfg, vocab, {}, batch_size=2)
    assert frac == 0.1 and set(text_batches(0)["text"][:, 0]) <= set(TEXT_PREFIX_IDS.values())
    all_frames = np.concatenate([datasets[0].episode(e)["observation.images.rgb"] for e in range(2)])
    picked = _evenly(datasets, _image_key, 3)  # evenly spaced over both episodes, only those kept
    ends = [0, (len(all_frames) - 1) / 2, len(all_frames) - 1]
    np.testing.assert_array_equal(np.stack(picked), all_frames[np.round(ends).astype(int)])
    with pytest.raises(ValueError, match="no audio observations"):
        train([str(data)], "tiny", 1, tmp_path / "run2", batch_size=2, denoise={"audio": 0.2}, progress=False)
    jax.clear_caches()
