"""Parity with the official PyTorch port (allenai/unified-io-2.pytorch) on data the port produced.

tests/data/official_port/ holds a small random-init checkpoint the port wrote in its hub layout, the
inputs it was run on and its outputs (README.md there says how). We import the checkpoint with
`uio2 convert`'s loader, select the port's exact erf GELU in the perceivers, and compare every stage.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from uio2_core.checkpoints import hf
from uio2_core.checkpoints.formats import detect_format, load_model
from uio2_core.checkpoints.synthetic import official_shapes
from uio2_core.vit import patchify

torch = pytest.importorskip("torch", reason="reading the port's pytorch_model.bin needs torch")

DATA = Path(__file__).parent / "data" / "official_port"
TOL = 1e-5


def _keys(tree, prefix=""):
    """Every key path of a nested JSON object."""
    out = set()
    for k, v in tree.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= _keys(v, prefix + k + ".")
    return out


@pytest.fixture(scope="module")
def port_state():
    return torch.load(DATA / hf.BIN_FILE, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def model():
    assert detect_format(DATA) == "hf"
    cfg = hf.read_config(DATA)
    erf = {k: dataclasses.replace(getattr(cfg, k), gelu="erf") for k in ("image_history", "audio_history")}
    return load_model(DATA, cfg.replace(**erf), with_vqgan=True)


@pytest.fixture(scope="module")
def io():
    ins = {k: np.asarray(v) for k, v in np.load(DATA / "inputs.npz").items()}
    ins = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in ins.items()}
    return ins, dict(np.load(DATA / "outputs.npz"))


@pytest.fixture(scope="module")
def batch(io):
    ins, _ = io
    keys = ("text", "image", "image_history", "audio", "audio_history")
    out = {k: jnp.asarray(ins[k]) for k in keys}
    out |= {f"{k}_mask": jnp.asarray(ins[f"{k}_mask"]).astype(bool) for k in keys[1:]}
    return out


def _close(ours, theirs, what, valid=None):
    """Max abs difference under TOL, over the `valid` positions [B, L] when given.

    Padding positions are left out: the port's ViT masks padded queries too (ours only keys), so
    their features differ, and nothing downstream reads them (every later attention masks them).
    """
    ours = np.asarray(ours, np.float32)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != port {theirs.shape}"
    diff = np.abs(ours - theirs)
    if valid is not None:
        diff = diff[np.asarray(valid, bool)]
    err = float(np.max(diff))
    assert err < TOL, f"{what}: max abs difference {err:.3g} to the port (limit {TOL})"


def test_config_is_the_ports(model):
    cfg = model.cfg
    assert (cfg.image_input_size, cfg.image_history_size, cfg.audio_vit.num_pos) == (96, 64, 514)
    assert cfg.image_vit.num_layers == 3 and cfg.image_vqgan.resolution == 16
    assert cfg.audio_vqgan.input_size == (32, 64) and cfg.decoder_max_audio_length == 32


def _forward(model, batch, target_image, target_audio, text_targets, steps: int):
    """Every stage the port recorded, in one jitted function (eager JAX takes ~60 s here)."""
    emb, out = model.input_embedders, {}
    out["image_vit"] = emb.image.vit(patchify(batch["image"], 16), emb.image.grid(), batch["image_mask"])
    out["audio_vit"] = emb.audio.vit(patchify(batch["audio"], 16), emb.audio.grid(), batch["audio_mask"])
    for name, vit in (("image_history", emb.image.vit), ("audio_history", emb.audio.vit)):
        frames = batch[name]
        b, t = frames.shape[:2]
        mask = batch[f"{name}_mask"].reshape(b * t, -1)
        grid = getattr(emb, name).grid()
        feats, _ = vit(patchify(frames.reshape(b * t, *frames.shape[2:]), 16), grid, mask)
        hist = getattr(emb, name)
        out[f"{name}_latents"] = hist.resampler(hist.pre_projection(feats), mask)
    enc = model.encode(batch)
    out["encoded"], out["encoder_mask"] = enc.encoded, enc.mask
    # The port tokenised the image / audio targets with its VQ-GANs (ids + 2); ours must agree.
    out["image_ids"] = model.target_embedders.image.vqgan.encode_to_ids(target_image) + 2
    spec = target_audio.transpose(0, 2, 1, 3)  # (time, mel) -> (mel, time)
    out["audio_ids"] = model.target_embedders.audio.vqgan.encode_to_ids(spec) + 2
    targets = {"text": text_targets, "image": out["image_ids"], "audio": out["audio_ids"]}
    out["logits"] = model.decode(enc, targets)
    out["greedy_tokens"], out["greedy_step_logits"] = _greedy_from(model, enc, steps)
    return out


@pytest.fixture(scope="module")
def ours(model, batch, io):
    ins, out = io
    graphdef, state = nnx.split(model)
    steps = out["greedy_tokens"].shape[1]
    run = jax.jit(lambda st, *a: _forward(nnx.merge(graphdef, st), *a, steps))
    args = (
        jnp.asarray(ins["target_image"]),
        jnp.asarray(ins["target_audio"]),
        jnp.asarray(ins["text_targets"]),
    )
    return jax.tree.map(np.asarray, run(state, batch, *args))


def test_feature_extractors_and_perceivers(ours, batch, io):
    _, out = io
    for name, key in (("image ViT", "image"), ("AST", "audio")):
        last, second = ours[f"{key}_vit"]
        _close(last, out[f"{key}_vit_last"], f"{name} last block", batch[f"{key}_mask"])
        _close(second, out[f"{key}_vit_block2"], f"{name} block 2", batch[f"{key}_mask"])
    for name in ("image_history", "audio_history"):
        frame_valid = np.asarray(batch[f"{name}_mask"]).any(-1).reshape(-1)  # padding frames are masked later
        _close(ours[f"{name}_latents"], out[f"{name}_latents"], f"{name} perceiver latents", frame_valid)


def test_encoder_and_logits_per_target(ours, io):
    ins, out = io
    np.testing.assert_array_equal(ours["encoder_mask"], out["encoder_mask"].astype(bool))
    _close(ours["encoded"], out["encoder_output"], "encoder output", ours["encoder_mask"])
    np.testing.assert_array_equal(ours["image_ids"], out["targets_image"])
    np.testing.assert_array_equal(ours["audio_ids"], out["targets_audio"])
    logits, valid = ours["logits"], ins["text_targets"] != 0
    _close(logits["text"][..., ::16], out["logits_text"], "text logits", valid)
    np.testing.assert_array_equal(logits["text"].argmax(-1)[valid], out["logits_text_argmax"][valid])
    _close(logits["image"], out["logits_image"], "image logits")
    _close(logits["audio"], out["logits_audio"], "audio logits")


def _greedy_from(model, enc, steps: int):
    """Greedy decoding with the KV cache, one token per step (what the policy runs)."""
    cache = model.init_cache(enc, "text", steps)

    def step(carry, i):
        token, cache = carry
        logits, cache = model.decode_step(enc, "text", token, i, cache)
        nxt = jnp.argmax(logits, -1).astype(jnp.int32)
        return (nxt, cache), (nxt, logits[:, ::16])

    start = jnp.zeros((enc.encoded.shape[0],), jnp.int32)
    _, (tokens, logits) = jax.lax.scan(step, (start, cache), jnp.arange(steps))
    return tokens.T, logits.transpose(1, 0, 2)


def test_cached_greedy_decoding(ours, io):
    _, out = io
    np.testing.assert_array_equal(ours["greedy_tokens"], out["greedy_tokens"])
    _close(ours["greedy_step_logits"], out["greedy_step_logits"], "cached decode step logits")


def test_cached_greedy_decoding_with_packed_step_weights(model, batch, io):
    """The decode step as it runs on CPU by default (`decoding.step_weights`: transposed, q|k|v and
    wi_0|wi_1 packed) against the port's own greedy decoding."""
    from uio2_core import decoding

    _, out = io
    graphdef, state = nnx.split(model)
    weights = decoding.step_weights(model, "text", True)
    steps = out["greedy_tokens"].shape[1]

    @jax.jit
    def run(state, weights, batch):
        m = decoding.use_step_weights(nnx.merge(graphdef, state), weights, "text")
        return _greedy_from(m, m.encode(batch), steps)

    tokens, logits = jax.tree.map(np.asarray, run(state, weights, batch))
    np.testing.assert_array_equal(tokens, out["greedy_tokens"])
    _close(logits, out["greedy_step_logits"], "cached decode step logits, packed weights")


def test_export_equals_the_ports_state_dict(model, port_state, tmp_path):
    hf.export_hf(model, tmp_path / "out")
    ours = torch.load(tmp_path / "out" / hf.BIN_FILE, map_location="cpu", weights_only=True)
    assert set(ours) == set(port_state), (
        f"missing {sorted(set(port_state) - set(ours))[:5]}, extra {sorted(set(ours) - set(port_state))[:5]}"
    )
    for key, theirs in port_state.items():
        mine = ours[key]
        assert mine.shape == theirs.shape and mine.dtype == theirs.dtype, (
            f"{key}: {tuple(mine.shape)} {mine.dtype} != port {tuple(theirs.shape)} {theirs.dtype}"
        )
        assert torch.equal(mine, theirs), f"{key}: values differ from the port's"
    exported = json.loads((tmp_path / "out" / hf.CONFIG_FILE).read_text())
    port_cfg = json.loads((DATA / hf.CONFIG_FILE).read_text())
    assert _keys(exported) == _keys(port_cfg), (
        f"config.json keys: extra {sorted(_keys(exported) - _keys(port_cfg))}, "
        f"missing {sorted(_keys(port_cfg) - _keys(exported))}"
    )
    # Everything the port reads to size the model is what it wrote.
    for block in (
        "t5_config",
        "image_vit_cfg",
        "audio_vit_cfg",
        "image_history_cfg",
        "image_vqgan",
        "audio_vqgan",
    ):
        assert exported[block] == port_cfg[block], block
    # And it reads back as the same config, without and with our sidecar.
    (tmp_path / "out" / hf.OURS_FILE).rename(tmp_path / "sidecar.json")
    assert hf.read_config(tmp_path / "out") == model.cfg.replace(
        name="out",
        image_history=dataclasses.replace(model.cfg.image_history, gelu="tanh"),
        audio_history=dataclasses.replace(model.cfg.audio_history, gelu="tanh"),
    )


def test_synthetic_generator_follows_the_ports_schema(model, port_state):
    """The synthetic checkpoints the other tests use have the port's keys and shapes exactly."""
    shapes = official_shapes(model.cfg)
    missing, extra = sorted(set(port_state) - set(shapes)), sorted(set(shapes) - set(port_state))
    assert not missing and not extra, f"missing {missing[:5]}, extra {extra[:5]}"
    bad = {k: (shapes[k], tuple(v.shape)) for k, v in port_state.items() if tuple(v.shape) != shapes[k]}
    assert not bad, f"shapes differ from the port's: {dict(list(bad.items())[:5])}"
