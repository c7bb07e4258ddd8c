"""T5X checkpoints: JAX names -> official keys (reference 1.7 rules), and a synthetic tensorstore import."""

from __future__ import annotations

import re

import numpy as np
import pytest
from flax import nnx

from uio2_core.checkpoints.schema import build_schema
from uio2_core.checkpoints.t5x import t5x_to_official
from uio2_core.config import get_config

NAMES = {
    "target/text_token_embedder/embedding": "text_token_embedder.weight",
    "target/encoder/layers_3/pre_attention_layer_norm/scale": "encoder.layers_3.pre_attention_norm.scale",
    "target/decoder/layers_0/pre_cross_attention_layer_norm/scale":
        "decoder.layers_0.pre_cross_attention_norm.scale",
    "target/decoder/layers_0/encoder_decoder_attention/query_norm/scale":
        "decoder.layers_0.encoder_decoder_attention.query_norm.scale",
    "target/encoder/layers_1/mlp/wi_0/kernel": "encoder.layers_1.mlp.wi_0.weight",
    "target/input_image_encoder/image_encoder/vision_transformer/Transformer_0/ResidualAttentionBlock_4/"
    "MultiHeadDotProductAttention_0/key/kernel":
        "input_embedders.image.image_encoder.vision_transformer.transformer.resblocks.4.attn.key_in_proj_weight",
    "target/input_image_encoder/image_encoder/vision_transformer/Transformer_0/ResidualAttentionBlock_0/"
    "MultiHeadDotProductAttention_0/out/bias":
        "input_embedders.image.image_encoder.vision_transformer.transformer.resblocks.0.attn.out_proj.bias",
    "target/input_image_encoder/image_encoder/vision_transformer/Transformer_0/ResidualAttentionBlock_2/MLP_0/"
    "c_fc/kernel":
        "input_embedders.image.image_encoder.vision_transformer.transformer.resblocks.2.mlp.fc1.weight",
    "target/input_audio_encoder/image_encoder/vision_transformer/Transformer_0/ResidualAttentionBlock_1/norm2/"
    "scale": "input_embedders.audio.image_encoder.vision_transformer.transformer.resblocks.1.ln_2.weight",
    "target/input_audio_encoder/image_encoder/vision_transformer/pos_embed":
        "input_embedders.audio.image_encoder.vision_transformer.positional_embedding",
    "target/input_encoders_image_history/resampler/PerceiverResampler_0/resampler_latents":
        "input_embedders.image_history.resampler.perceiver.latents",
    "target/input_encoders_audio_history/resampler/PerceiverResampler_0/layers_1/pre_xattention_layer_norm/scale":
        "input_embedders.audio_history.resampler.perceiver.layers_1.pre_xattention_norm.scale",
    "target/target_encoders_image/discrete_vae/encoder/down_0_block_1/norm1/scale":
        "target_embedders.image.vqgan.encoder.down_0_block_1.norm1.weight",
    "target/target_encoders_image/discrete_vae/quantize/embedding":
        "target_embedders.image.vqgan.quantize.embedding.weight",
    "target/target_encoders_audio/discrete_vae/decoder/ConvTranspose_0/kernel":
        "target_embedders.audio.vqgan.decoder.conv_transpose.weight",
    "target/target_encoders_audio/discrete_vae/encoder/Transformer_0/encoderblock_3/MlpBlock_0/DenseGeneral_1/bias":
        "target_embedders.audio.vqgan.encoder.transformer.encoderblock_3.mlp.fc2.bias",
    "target/target_encoders_audio/discrete_vae/encoder/Transformer_0/encoderblock_0/LayerNormWithBias_0/scale":
        "target_embedders.audio.vqgan.encoder.transformer.encoderblock_0.ln_1.weight",
    "target/target_encoders_audio/discrete_vae/encoder/Transformer_0/encoderblock_0/"
    "MultiHeadDotProductAttention_0/query/kernel":
        "target_embedders.audio.vqgan.encoder.transformer.encoderblock_0.attn.query.weight",
    "target/target_encoders_text/modality_embedding": "target_embedders.text.modality_embedding",
}  # fmt: skip


@pytest.mark.parametrize("jax_name", sorted(NAMES))
def test_jax_names_follow_the_reference_rules(jax_name):
    assert t5x_to_official(jax_name) == NAMES[jax_name]
    assert t5x_to_official(jax_name.replace("/", ".")) == NAMES[jax_name]


def _to_jax(key: str) -> str:
    """Test-only inverse of the rules: an official key -> a plausible T5X name."""
    for ours, jax_name in (
        ("input_embedders.text", "input_text_encoder"),
        ("input_embedders.image_history", "input_encoders_image_history"),
        ("input_embedders.audio_history", "input_encoders_audio_history"),
        ("input_embedders.image", "input_image_encoder"),
        ("input_embedders.audio", "input_audio_encoder"),
        ("target_embedders.text", "target_encoders_text"),
        ("target_embedders.image", "target_encoders_image"),
        ("target_embedders.audio", "target_encoders_audio"),
    ):
        if key.startswith(ours + "."):
            key = jax_name + key[len(ours) :]
            break
    key = key.replace(".perceiver.", ".PerceiverResampler_0.").replace(".latents", ".resampler_latents")
    key = key.replace(".vqgan.", ".discrete_vae.")
    key = re.sub(r"\.(pre_\w+)_norm\.", r".\1_layer_norm.", key)
    if ".vision_transformer." in key:
        key = re.sub(r"\.transformer\.resblocks\.(\d+)\.", r".Transformer_0.ResidualAttentionBlock_\1.", key)
        key = re.sub(
            r"\.attn\.(query|key|value)_in_proj_weight$", r".MultiHeadDotProductAttention_0.\1.kernel", key
        )
        key = re.sub(
            r"\.attn\.(query|key|value)_in_proj_bias$", r".MultiHeadDotProductAttention_0.\1.bias", key
        )
        key = key.replace(".attn.out_proj.", ".MultiHeadDotProductAttention_0.out.")
        key = key.replace(".mlp.fc1.", ".MLP_0.c_fc.").replace(".mlp.fc2.", ".MLP_0.c_proj.")
        if key.startswith("input_audio_encoder"):
            key = key.replace(".ln_1.", ".norm1.").replace(".ln_2.", ".norm2.")
            key = key.replace(".positional_embedding", ".pos_embed")
    in_audio_vq = ".discrete_vae." in key and ("encoderblock" in key or "encoder_norm" in key)
    if in_audio_vq:
        key = key.replace(".transformer.", ".Transformer_0.").replace(
            ".attn.", ".MultiHeadDotProductAttention_0."
        )
        key = key.replace(".mlp.fc1.", ".MlpBlock_0.DenseGeneral_0.").replace(
            ".mlp.fc2.", ".MlpBlock_0.DenseGeneral_1."
        )
        key = key.replace(".ln_1.", ".LayerNormWithBias_0.").replace(".ln_2.", ".LayerNormWithBias_1.")
    key = key.replace(".conv_transpose.", ".ConvTranspose_0.")
    if key.endswith("quantize.embedding.weight"):
        return "target." + key[: -len(".weight")]
    if key.endswith("token_embedder.weight"):
        return "target." + key[: -len("weight")] + "embedding"
    norm_like = (".vision_transformer." in key or ".discrete_vae." in key) and re.search(
        r"(ln_\d|norm\d?|norm_out|pre_ln|encoder_norm|LayerNormWithBias_\d)\.weight$", key
    )
    if norm_like:
        return "target." + key[: -len("weight")] + "scale"
    if key.endswith(".weight"):
        return "target." + key[: -len("weight")] + "kernel"
    return "target." + key


def test_every_schema_key_has_a_t5x_name():
    for spec in build_schema(get_config("tiny")):
        assert t5x_to_official(_to_jax(spec.official)) == spec.official, spec.official


def test_synthetic_t5x_directory_imports(tmp_path):
    ts = pytest.importorskip("tensorstore", reason="T5X checkpoints need tensorstore (pip install -e .[t5x])")
    pytest.importorskip("msgpack", reason="T5X checkpoints need msgpack (pip install -e .[t5x])")
    from flax.serialization import msgpack_serialize

    from uio2_core.checkpoints.formats import detect_format, load_model

    cfg = get_config("tiny")
    rng = np.random.default_rng(0)
    tree: dict = {}
    expected = {}
    for spec in build_schema(cfg):
        value = rng.normal(size=spec.shape).astype(np.float32)  # T5X stores our (JAX) layouts
        expected[spec.path] = value
        name = _to_jax(spec.official)
        if value.size > 4096:  # big arrays in tensorstore zarr, small ones inline, as T5X does
            ts.open(
                {"driver": "zarr", "kvstore": {"driver": "file", "path": str(tmp_path / name)}},
                create=True,
                dtype=ts.float32,
                shape=value.shape,
            ).result().write(value).result()
            leaf = {"driver": "zarr", "kvstore": {"driver": "file", "path": name}}
        else:
            leaf = value
        node = tree
        parts = name.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = leaf
    (tmp_path / "checkpoint").write_bytes(msgpack_serialize({"target": tree["target"], "state": {"step": 3}}))
    assert detect_format(tmp_path) == "t5x"
    model = load_model(tmp_path, cfg, with_vqgan=True)
    got = {p: np.asarray(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        np.testing.assert_array_equal(got[k], v, err_msg=str(k))
