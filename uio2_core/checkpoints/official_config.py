"""Our UIO2Config <-> the official `config.json` (the PyTorch port's `Config.to_dict()`).

Field names inside the official blocks are our best reading of the reference (section 1.5 lists the
top-level fields; the inner names follow the T5X / PyTorch dataclasses it cites: `emb_dim`,
`num_heads`, `head_dim`, `mlp_dim`, `latents_size`, `n_embed`, `z_channels`, ...). Reading is
tolerant: a `uio2_embodied` block (written by our exports) holds our exact config and wins; otherwise
the size is detected from `t5_config` (large / xl / xxl) and, failing that, a config is built from the
official fields.
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

OURS_KEY = "uio2_embodied"
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


def _vit_fields(v: ViTConfig, audio: bool) -> dict[str, Any]:
    return {
        "patch_size": v.patch_size,
        "emb_dim": v.width,
        "num_heads": v.num_heads,
        "head_dim": v.head_dim,
        "mlp_dim": v.mlp_dim,
        "num_layers": v.num_layers,
        "num_pos": v.num_pos,
        "mlp_activations": ["gelu"],
        "transpose_input": audio,
        "dropout_rate": 0.0,
    }


def _perceiver_fields(p: PerceiverConfig) -> dict[str, Any]:
    return {
        "resampler_type": "perceiver",
        "latents_size": p.num_latents,
        "emb_dim": p.width,
        "num_heads": p.num_heads,
        "head_dim": p.head_dim,
        "mlp_dim": p.mlp_dim,
        "num_layers": p.num_layers,
        "xattention_index": list(range(p.num_layers)),
        "max_frames": p.max_frames,
        "mlp_activations": ["gelu"],
        "attn_qk_norm": p.qk_norm,
        "xattn_qk_norm": p.qk_norm,
        "attn_scaled_cosine": p.scaled_cosine,
        "xattn_scaled_cosine": p.scaled_cosine,
        "dropout_rate": 0.0,
    }


def official_dict(cfg: UIO2Config) -> dict[str, Any]:
    """The official `config.json` fields for our config, plus our exact config under `uio2_embodied`."""
    t, iv, av = cfg.transformer, cfg.image_vqgan, cfg.audio_vqgan
    return {
        "t5_config": {
            "vocab_size": t.text_vocab_size,
            "image_vocab_size": t.image_vocab_size,
            "audio_vocab_size": t.audio_vocab_size,
            "image_patch_size": cfg.image_vit.patch_size,
            "audio_patch_size": cfg.audio_vit.patch_size,
            "emb_dim": t.d_model,
            "num_heads": t.num_heads,
            "head_dim": t.head_dim,
            "mlp_dim": t.mlp_dim,
            "num_encoder_layers": t.num_encoder_layers,
            "num_decoder_layers": t.num_decoder_layers,
            "mlp_activations": ["silu", "linear"],
            "dropout_rate": 0.0,
            "logits_via_embedding": True,
            "float32_attention_logits": True,
            "decoder_xattention_internval": 1,
            "qk_norm": t.qk_norm,
            "encoder_max_image_length": cfg.encoder_max_image_length,
            "encoder_max_audio_length": cfg.encoder_max_audio_length,
            "encoder_max_text_length": t.encoder_max_text_length,
            "decoder_max_image_length": cfg.decoder_max_image_length,
            "decoder_max_audio_length": cfg.decoder_max_audio_length,
            "decoder_max_text_length": t.decoder_max_text_length,
            "text_pos_emb": "llama_rope",
            "default_image_size": [cfg.image_input_size, cfg.image_input_size],
            "default_image_history_vit_size": [cfg.image_history_size, cfg.image_history_size],
            "default_audio_size": list(cfg.audio_input_size),
        },
        "image_vit_cfg": _vit_fields(cfg.image_vit, audio=False),
        "audio_vit_cfg": _vit_fields(cfg.audio_vit, audio=True),
        "image_history_cfg": _perceiver_fields(cfg.image_history),
        "audio_history_cfg": _perceiver_fields(cfg.audio_history),
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
            "default_input_size": list(av.input_size),
            "patch_size": list(av.patch_size),
            "output_channel": 1,
            "use_bias": False,
            "act_fn": "relu",
        },
        "freeze_vit": True,
        "input_modalities": ["text", "image", "image_history", "audio", "audio_history"],
        "target_modalities": ["text", "image", "audio"],
        "sequence_length": {
            "text_inputs": t.encoder_max_text_length,
            "text_targets": t.decoder_max_text_length,
            "image_input_samples": cfg.encoder_max_image_length,
            "image_history_input_samples": cfg.image_history.num_latents,
            "audio_input_samples": cfg.encoder_max_audio_length,
            "audio_history_input_samples": cfg.audio_history.num_latents,
            "num_frames": cfg.image_history.max_frames,
        },
        "use_image_vit": True,
        "use_audio_vit": True,
        "use_image_history_vit": True,
        "use_audio_history_vit": True,
        OURS_KEY: {"config": config_to_dict(cfg)},
    }


def _released(name: str, t5: dict[str, Any]) -> bool:
    t = get_config(name).transformer
    want = {"emb_dim": t.d_model, "num_heads": t.num_heads, "head_dim": t.head_dim, "mlp_dim": t.mlp_dim}
    return all(t5.get(k) == v for k, v in want.items())


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


def config_from_official(data: dict[str, Any], name: str = "custom") -> UIO2Config:
    """Our config for an official `config.json` (see the module docstring for the precedence)."""
    if OURS_KEY in data:
        return config_from_dict(data[OURS_KEY]["config"])
    t5 = data.get("t5_config")
    if not isinstance(t5, dict):
        raise ValueError("config.json has no `t5_config` block: not a UIO2 config")
    for size in ("large", "xl", "xxl"):
        if _released(size, t5):
            return get_config(size)
    base = get_config("large")
    t = dataclasses.replace(
        base.transformer,
        d_model=t5["emb_dim"],
        num_heads=t5["num_heads"],
        head_dim=t5["head_dim"],
        mlp_dim=t5["mlp_dim"],
        num_encoder_layers=t5.get("num_encoder_layers", 24),
        num_decoder_layers=t5.get("num_decoder_layers", 24),
        text_vocab_size=t5.get("vocab_size", base.transformer.text_vocab_size),
        image_vocab_size=t5.get("image_vocab_size", base.transformer.image_vocab_size),
        audio_vocab_size=t5.get("audio_vocab_size", base.transformer.audio_vocab_size),
        qk_norm=t5.get("qk_norm", True),
    )
    return base.replace(
        name=name,
        transformer=t,
        image_history=_perceiver_from(data.get("image_history_cfg", {}), base.image_history),
        audio_history=_perceiver_from(data.get("audio_history_cfg", {}), base.audio_history),
    )
