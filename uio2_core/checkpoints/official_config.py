"""Our UIO2Config <-> the official `config.json` (the PyTorch port's `Config.to_dict()`).

`official_dict` writes exactly the keys of the port's dataclasses (`Config`, `T5Config`,
`ImageVitFeatureConfig`, `AudioVitFeatureConfig`, `ImageResamplerConfig`, `AudioResamplerConfig`,
`VQGANConfig`, `AudioViTVQGANConfig` in allenai/unified-io-2.pytorch `uio2/config.py`), so the port's
`Config.from_dict` accepts it. What the official fields cannot express (our config name, the
perceiver GELU choice, dtypes, a non-514 AST position table) travels in a sidecar file
(`uio2_embodied.json`, see hf.py) that the port ignores. `config_from_official` builds our config from
every official field; a config equal in every dimension to a released size gets that size's name.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from uio2_core.config import (
    AudioVQGANConfig,
    PerceiverConfig,
    TransformerConfig,
    UIO2Config,
    ViTConfig,
    VQGANConfig,
    get_config,
)

_SUBCONFIGS = {
    "transformer": TransformerConfig,
    "image_vit": ViTConfig,
    "audio_vit": ViTConfig,
    "image_history": PerceiverConfig,
    "audio_history": PerceiverConfig,
    "image_vqgan": VQGANConfig,
    "audio_vqgan": AudioVQGANConfig,
}


def config_to_dict(cfg: UIO2Config) -> dict[str, Any]:
    """Our exact config as JSON-able data (tuples become lists)."""
    return dataclasses.asdict(cfg)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _build(cls, data: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields in config: {sorted(unknown)}")
    return cls(**{k: _tuples(v) for k, v in data.items()})


def config_from_dict(data: dict[str, Any]) -> UIO2Config:
    """Inverse of `config_to_dict`."""
    kw = {k: (_build(_SUBCONFIGS[k], v) if k in _SUBCONFIGS else v) for k, v in data.items()}
    return _build(UIO2Config, kw)


def _vit_fields(v: ViTConfig, audio: bool, input_size: tuple[int, int]) -> dict[str, Any]:
    out: dict[str, Any] = {"vit_embed": True} if audio else {}
    out |= {
        "patch_size": v.patch_size,
        "pos_patch_size": v.patch_size,
        "emb_dim": v.width,
        "num_heads": v.num_heads,
        "num_layers": v.num_layers,
        "head_dim": v.head_dim,
        "mlp_dim": v.mlp_dim,
        "mlp_activations": ["gelu"],
        "dropout_rate": 0.0,
        "dropout_broadcast_dims": [],
        "float32_attention_logits": True,
        "default_input_size": list(input_size),
    }
    return out | ({"transpose_input": True} if audio else {"num_pos": v.num_pos})


def _perceiver_fields(p: PerceiverConfig) -> dict[str, Any]:
    return {
        "resampler_type": "perceiver",
        "max_frames": p.max_frames,
        "latents_size": p.num_latents,
        "emb_dim": p.width,
        "num_heads": p.num_heads,
        "num_layers": p.num_layers,
        "xattention_index": list(range(p.num_layers)),
        "head_dim": p.head_dim,
        "mlp_dim": p.mlp_dim,
        "mlp_activations": ["gelu"],
        "dropout_rate": 0.0,
        "dropout_broadcast_dims": [-2],
        "droppath_rate": 0.0,
        "layer_drop": 0.0,
        "xattn_qk_norm": p.qk_norm,
        "xattn_scaled_cosine": p.scaled_cosine,
        "attn_qk_norm": p.qk_norm,
        "attn_scaled_cosine": p.scaled_cosine,
        "float32_attention_logits": True,
        "clip_attn_logit": None,
    }


def _t5_fields(cfg: UIO2Config) -> dict[str, Any]:
    t = cfg.transformer
    return {
        "vocab_size": t.text_vocab_size,
        "image_vocab_size": t.image_vocab_size,
        "image_patch_size": cfg.image_vit.patch_size,
        "audio_vocab_size": t.audio_vocab_size,
        "emb_dim": t.d_model,
        "num_heads": t.num_heads,
        "num_encoder_layers": t.num_encoder_layers,
        "num_decoder_layers": t.num_decoder_layers,
        "head_dim": t.head_dim,
        "mlp_dim": t.mlp_dim,
        "mlp_activations": ["silu", "linear"],
        "dropout_rate": 0.0,
        "dropout_broadcast_dims": [-2],
        "logits_via_embedding": True,
        "float32_attention_logits": True,
        "decoder_xattention_internval": 1,
        "qk_norm": t.qk_norm,
        "dalle_attn_mask": True,
        "dynamic_unk_mask": True,
        "encoder_max_image_length": cfg.encoder_max_image_length,
        "encoder_max_audio_length": cfg.encoder_max_audio_length,
        "encoder_max_text_length": t.encoder_max_text_length,
        "decoder_max_image_length": cfg.decoder_max_image_length,
        "decoder_max_audio_length": cfg.decoder_max_audio_length,
        "decoder_max_text_length": t.decoder_max_text_length,
        "text_pos_emb": "llama_rope",
        "image_pos_emb": "llama_rope",
        "audio_pos_emb": "llama_rope",
        "image_history_pos_emb": "llama_rope",
        "audio_history_pos_emb": "llama_rope",
        "image_tokenizer_type": "vqgan",
        # The image *target* size (VQ-GAN input): it sizes the port's image-target masks.
        "default_image_size": [cfg.image_vqgan.resolution] * 2,
        "default_image_vit_size": [cfg.image_input_size] * 2,
        "default_image_history_vit_size": [cfg.image_history_size] * 2,
        # The audio target spectrogram (time, mel): the audio VQ-GAN's (mel, time) transposed.
        "default_audio_size": list(cfg.audio_vqgan.input_size[::-1]),
        "default_audio_vit_size": list(cfg.audio_input_size),
        "default_audio_history_vit_size": list(cfg.audio_input_size),
        "image_vit_patch_size": cfg.image_vit.patch_size,
        "audio_patch_size": cfg.audio_vit.patch_size,
        "audio_vit_patch_size": cfg.audio_vit.patch_size,
    }


def official_dict(cfg: UIO2Config) -> dict[str, Any]:
    """The official `config.json` for our config: exactly the port's keys, in its order."""
    iv, av = cfg.image_vqgan, cfg.audio_vqgan
    return {
        "t5_config": _t5_fields(cfg),
        "image_history_cfg": _perceiver_fields(cfg.image_history),
        "audio_history_cfg": _perceiver_fields(cfg.audio_history),
        "freeze_vit": True,
        "input_modalities": ["text", "image", "image_history", "audio", "audio_history"],
        "target_modalities": ["text", "image", "audio"],
        "sequence_length": {
            "is_training": True,
            "image_input_samples": cfg.encoder_max_image_length,
            "image_history_input_samples": cfg.image_history_grid**2,
            "audio_input_samples": cfg.encoder_max_audio_length,
            "audio_history_input_samples": cfg.encoder_max_audio_length,
            "num_frames": 4,
        },
        "image_vqgan": {
            "embed_dim": iv.embed_dim,
            "n_embed": iv.n_embed,
            "double_z": False,
            "z_channels": iv.z_channels,
            "resolution": iv.resolution,
            "in_channels": iv.in_channels,
            "out_ch": iv.out_ch,
            "ch": iv.ch,
            "ch_mult": list(iv.ch_mult),
            "num_res_blocks": iv.num_res_blocks,
            "attn_resolutions": list(iv.attn_resolutions),
            "dropout": 0.0,
            "default_input_size": [iv.resolution, iv.resolution],
            "patch_size": [iv.downsample, iv.downsample],
            "checkpoint_path": "",
        },
        "audio_vqgan": {
            "vocab_size": av.n_embed,
            "proj_dim": av.embed_dim,
            "encoder_hidden_size": av.width,
            "encoder_num_layers": av.num_encoder_layers,
            "encoder_mlp_dim": av.mlp_dim,
            "encoder_num_heads": av.num_heads,
            "encoder_head_dim": av.head_dim,
            "decoder_hidden_size": av.width,
            "decoder_num_layers": av.num_decoder_layers,
            "decoder_mlp_dim": av.mlp_dim,
            "decoder_num_heads": av.num_heads,
            "decoder_head_dim": av.head_dim,
            "dropout_rate": 0.0,
            "droppath_rate": 0.0,
            "attention_dropout_rate": 0.0,
            "use_bias": False,
            "act_fn": "relu",
            "default_input_size": list(av.input_size),
            "patch_size": list(av.patch_size),
            "output_channel": 1,
            "checkpoint_path": "",
            "use_decoder": True,
        },
        # The port never reads the image ViT's default_input_size; its default is kept.
        "image_vit_cfg": _vit_fields(cfg.image_vit, False, (256, 256)),
        "audio_vit_cfg": _vit_fields(cfg.audio_vit, True, cfg.audio_input_size),
        "use_image_vit": True,
        "use_audio_vit": True,
        "use_image_history_vit": True,
        "use_audio_history_vit": True,
    }


def _block(data: dict[str, Any], name: str) -> dict[str, Any]:
    block = data.get(name, {})
    if not isinstance(block, dict):
        raise ValueError(f"config.json `{name}` must be an object, got {type(block).__name__}")
    return block


def _perceiver_from(fields: dict[str, Any], default: PerceiverConfig) -> PerceiverConfig:
    return dataclasses.replace(
        default,
        num_latents=fields.get("latents_size", default.num_latents),
        width=fields.get("emb_dim", default.width),
        num_heads=fields.get("num_heads", default.num_heads),
        head_dim=fields.get("head_dim", default.head_dim),
        mlp_dim=fields.get("mlp_dim", default.mlp_dim),
        num_layers=fields.get("num_layers", default.num_layers),
        max_frames=fields.get("max_frames", default.max_frames),
        qk_norm=bool(fields.get("xattn_qk_norm", default.qk_norm)),
        scaled_cosine=bool(fields.get("xattn_scaled_cosine", default.scaled_cosine)),
    )


# Image VQ-GAN fields with the same name and meaning in the port's VQGANConfig and ours.
_VQGAN_FIELDS = (
    "ch", "ch_mult", "num_res_blocks", "attn_resolutions", "z_channels", "n_embed", "embed_dim", "resolution",
    "in_channels", "out_ch",
)  # fmt: skip


def config_from_official(data: dict[str, Any], name: str = "custom") -> UIO2Config:
    """Our config for an official `config.json` (every field the port writes; its defaults otherwise).

    The perceiver GELU is the original JAX code's tanh (see PerceiverConfig.gelu); the port runs erf.
    """
    t5 = data.get("t5_config")
    if not isinstance(t5, dict):
        raise ValueError("config.json has no `t5_config` block: not a UIO2 config")
    base = get_config("large")
    tb, ivb, avb = base.transformer, base.image_vit, base.audio_vit
    t = dataclasses.replace(
        tb,
        d_model=t5["emb_dim"],
        num_heads=t5["num_heads"],
        head_dim=t5["head_dim"],
        mlp_dim=t5["mlp_dim"],
        num_encoder_layers=t5.get("num_encoder_layers", tb.num_encoder_layers),
        num_decoder_layers=t5.get("num_decoder_layers", tb.num_decoder_layers),
        text_vocab_size=t5.get("vocab_size", tb.text_vocab_size),
        image_vocab_size=t5.get("image_vocab_size", tb.image_vocab_size),
        audio_vocab_size=t5.get("audio_vocab_size", tb.audio_vocab_size),
        qk_norm=t5.get("qk_norm", tb.qk_norm),
        encoder_max_text_length=t5.get("encoder_max_text_length", tb.encoder_max_text_length),
        decoder_max_text_length=t5.get("decoder_max_text_length", tb.decoder_max_text_length),
    )

    def vit(fields: dict[str, Any], default: ViTConfig, **extra) -> ViTConfig:
        return dataclasses.replace(
            default,
            patch_size=fields.get("patch_size", default.patch_size),
            width=fields.get("emb_dim", default.width),
            num_heads=fields.get("num_heads", default.num_heads),
            head_dim=fields.get("head_dim", default.head_dim),
            mlp_dim=fields.get("mlp_dim", default.mlp_dim),
            num_layers=fields.get("num_layers", default.num_layers),
            **extra,
        )

    ivf = _block(data, "image_vit_cfg")
    image_vit = vit(ivf, ivb, num_pos=ivf.get("num_pos", ivb.num_pos))
    audio_vit = vit(_block(data, "audio_vit_cfg"), avb)  # the port's AST table is always 514 rows
    ivq, iv = _block(data, "image_vqgan"), base.image_vqgan
    image_vqgan = dataclasses.replace(iv, **{k: _tuples(ivq[k]) for k in _VQGAN_FIELDS if k in ivq})
    avq, av = _block(data, "audio_vqgan"), base.audio_vqgan
    audio_vqgan = dataclasses.replace(
        av,
        input_size=tuple(avq.get("default_input_size", av.input_size)),
        patch_size=tuple(avq.get("patch_size", av.patch_size)),
        width=avq.get("encoder_hidden_size", av.width),
        num_heads=avq.get("encoder_num_heads", av.num_heads),
        head_dim=avq.get("encoder_head_dim", av.head_dim),
        mlp_dim=avq.get("encoder_mlp_dim", av.mlp_dim),
        num_encoder_layers=avq.get("encoder_num_layers", av.num_encoder_layers),
        num_decoder_layers=avq.get("decoder_num_layers", av.num_decoder_layers),
        n_embed=avq.get("vocab_size", av.n_embed),
        embed_dim=avq.get("proj_dim", av.embed_dim),
    )
    if avq.get("decoder_hidden_size", audio_vqgan.width) != audio_vqgan.width:
        raise ValueError("audio_vqgan: encoder_hidden_size and decoder_hidden_size differ; not supported")
    image_size = t5.get("default_image_vit_size", [base.image_input_size] * 2)
    history_size = t5.get("default_image_history_vit_size", [base.image_history_size] * 2)
    for key, size in (
        ("default_image_vit_size", image_size),
        ("default_image_history_vit_size", history_size),
    ):
        if len(size) != 2 or size[0] != size[1]:
            raise ValueError(f"t5_config.{key} must be a square size, got {size}")
    cfg = base.replace(
        name=name,
        transformer=t,
        image_vit=image_vit,
        audio_vit=audio_vit,
        image_history=_perceiver_from(_block(data, "image_history_cfg"), base.image_history),
        audio_history=_perceiver_from(_block(data, "audio_history_cfg"), base.audio_history),
        image_vqgan=image_vqgan,
        audio_vqgan=audio_vqgan,
        image_input_size=image_size[0],
        image_history_size=history_size[0],
        audio_input_size=tuple(t5.get("default_audio_vit_size", base.audio_input_size)),
    )
    target = t5.get("default_image_size", [cfg.image_vqgan.resolution] * 2)
    if list(target) != [cfg.image_vqgan.resolution] * 2:
        raise ValueError(
            f"t5_config.default_image_size {list(target)} differs from the image VQ-GAN resolution "
            f"{cfg.image_vqgan.resolution}"
        )
    for size in ("large", "xl", "xxl"):  # a released size only if equal in every dimension
        if cfg.replace(name=size) == get_config(size):
            return get_config(size)
    return cfg
