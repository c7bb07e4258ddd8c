"""Synthetic checkpoints in the official PyTorch key schema, written from the reference's description.

`official_shapes` enumerates keys and PyTorch shapes straight from reference/uio2-architecture.md
section 1.6 for any config. It deliberately does not use `schema.py`, so tests comparing the two
check our mapping against the reference rather than against itself. `write_synthetic_bin` writes a
full-size `.bin` chunk by chunk through a memory-mapped scratch file (for the import benchmark).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

from uio2_core.config import AudioVQGANConfig, PerceiverConfig, UIO2Config, ViTConfig, VQGANConfig

Shapes = dict[str, tuple[int, ...]]


def _attention(prefix: str, d_q: int, inner: int, qk_norm: bool, head_dim: int) -> Shapes:
    out = {f"{prefix}.{n}.weight": (inner, d_q) for n in ("query", "key", "value")}
    out[f"{prefix}.out.weight"] = (d_q, inner)
    if qk_norm:
        out[f"{prefix}.query_norm.scale"] = (head_dim,)
        out[f"{prefix}.key_norm.scale"] = (head_dim,)
    return out


def _backbone(cfg: UIO2Config) -> Shapes:
    t = cfg.transformer
    d, inner, hd = t.d_model, t.num_heads * t.head_dim, t.head_dim
    mlp = {
        "mlp.wi_0.weight": (t.mlp_dim, d),
        "mlp.wi_1.weight": (t.mlp_dim, d),
        "mlp.wo.weight": (d, t.mlp_dim),
    }
    out: Shapes = {
        "text_token_embedder.weight": (t.text_vocab_size, d),
        "image_token_embedder.weight": (t.image_vocab_size, d),
        "audio_token_embedder.weight": (t.audio_vocab_size, d),
        "encoder.encoder_norm.scale": (d,),
        "decoder.decoder_norm.scale": (d,),
    }
    for i in range(t.num_encoder_layers):
        p = f"encoder.layers_{i}"
        out |= {f"{p}.pre_attention_norm.scale": (d,), f"{p}.pre_mlp_norm.scale": (d,)}
        out |= _attention(f"{p}.attention", d, inner, t.qk_norm, hd)
        out |= {f"{p}.{k}": v for k, v in mlp.items()}
    for i in range(t.num_decoder_layers):
        p = f"decoder.layers_{i}"
        for n in ("pre_self_attention_norm", "pre_cross_attention_norm", "pre_mlp_norm"):
            out[f"{p}.{n}.scale"] = (d,)
        out |= _attention(f"{p}.self_attention", d, inner, t.qk_norm, hd)
        out |= _attention(f"{p}.encoder_decoder_attention", d, inner, t.qk_norm, hd)
        out |= {f"{p}.{k}": v for k, v in mlp.items()}
    return out


def _vit(prefix: str, v: ViTConfig) -> Shapes:
    w, inner = v.width, v.num_heads * v.head_dim
    p = f"{prefix}.image_encoder.vision_transformer"
    out: Shapes = {f"{p}.embedding.weight": (w, v.patch_size**2 * v.in_channels)}
    if v.patch_bias:
        out[f"{p}.embedding.bias"] = (w,)
    if v.num_prefix_tokens == 1:
        out[f"{p}.class_embedding"] = (w,)
    else:
        out[f"{p}.cls_token"] = (w,)
        out[f"{p}.dist_token"] = (w,)
    out[f"{p}.positional_embedding"] = (v.num_pos, w)
    if v.pre_ln:
        out |= {f"{p}.pre_ln.weight": (w,), f"{p}.pre_ln.bias": (w,)}
    for i in range(v.num_layers):
        b = f"{p}.transformer.resblocks.{i}"
        for ln in ("ln_1", "ln_2"):
            out |= {f"{b}.{ln}.weight": (w,), f"{b}.{ln}.bias": (w,)}
        for n in ("query", "key", "value"):
            out |= {f"{b}.attn.{n}_in_proj_weight": (inner, w), f"{b}.attn.{n}_in_proj_bias": (inner,)}
        out |= {f"{b}.attn.out_proj.weight": (w, inner), f"{b}.attn.out_proj.bias": (w,)}
        out |= {f"{b}.mlp.fc1.weight": (v.mlp_dim, w), f"{b}.mlp.fc1.bias": (v.mlp_dim,)}
        out |= {f"{b}.mlp.fc2.weight": (w, v.mlp_dim), f"{b}.mlp.fc2.bias": (w,)}
    return out


def _history(prefix: str, p: PerceiverConfig, vit_width: int, d: int) -> Shapes:
    r, inner = p.width, p.num_heads * p.head_dim
    out: Shapes = {
        f"{prefix}.pre_projection.weight": (r, vit_width),
        f"{prefix}.post_projection.weight": (d, r),
        f"{prefix}.modality_embedding": (d,),
    }
    q = f"{prefix}.resampler.perceiver"
    out |= {
        f"{q}.latents": (p.num_latents, r),
        f"{q}.context_norm.scale": (r,),
        f"{q}.perceiver_norm.scale": (r,),
    }
    for i in range(p.num_layers):
        b = f"{q}.layers_{i}"
        out |= {f"{b}.pre_xattention_norm.scale": (r,), f"{b}.pre_mlp_norm.scale": (r,)}
        out |= _attention(f"{b}.xattention", r, inner, p.qk_norm, p.head_dim)
        if p.scaled_cosine:
            out[f"{b}.xattention.logit_scale"] = (p.num_heads,)
        out |= {f"{b}.mlp.wi.weight": (p.mlp_dim, r), f"{b}.mlp.wo.weight": (r, p.mlp_dim)}
    return out


def _conv(prefix: str, n_in: int, n_out: int, k: int) -> Shapes:
    return {f"{prefix}.weight": (n_out, n_in, k, k), f"{prefix}.bias": (n_out,)}


def _norm(prefix: str, c: int) -> Shapes:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,)}


def _resblock(prefix: str, n_in: int, n_out: int) -> Shapes:
    out = _norm(f"{prefix}.norm1", n_in) | _conv(f"{prefix}.conv1", n_in, n_out, 3)
    out |= _norm(f"{prefix}.norm2", n_out) | _conv(f"{prefix}.conv2", n_out, n_out, 3)
    return out | (_conv(f"{prefix}.nin_shortcut", n_in, n_out, 1) if n_in != n_out else {})


def _attnblock(prefix: str, c: int) -> Shapes:
    out = _norm(f"{prefix}.norm", c)
    for n in ("q", "k", "v", "proj_out"):
        out |= _conv(f"{prefix}.{n}", c, c, 1)
    return out


def _image_vqgan(prefix: str, v: VQGANConfig) -> Shapes:
    levels = len(v.ch_mult)
    attn = {lvl for lvl in range(levels) if v.resolution // 2**lvl in v.attn_resolutions}
    e, out = f"{prefix}.encoder", _conv(f"{prefix}.encoder.conv_in", v.in_channels, v.ch, 3)
    block_in = v.ch
    for lvl in range(levels):
        block_in, block_out = v.ch * (1, *v.ch_mult)[lvl], v.ch * v.ch_mult[lvl]
        for b in range(v.num_res_blocks):
            out |= _resblock(f"{e}.down_{lvl}_block_{b}", block_in, block_out)
            block_in = block_out
            if lvl in attn:
                out |= _attnblock(f"{e}.down_{lvl}_attn_{b}", block_in)
        if lvl != levels - 1:
            out |= _conv(f"{e}.down_{lvl}_downsample.conv", block_in, block_in, 3)
    mid = _resblock("mid_block_1", block_in, block_in) | _attnblock("mid_attn_1", block_in)
    mid |= _resblock("mid_block_2", block_in, block_in)
    out |= {f"{e}.{k}": s for k, s in mid.items()}
    out |= _norm(f"{e}.norm_out", block_in) | _conv(f"{e}.conv_out", block_in, v.z_channels, 3)
    out |= _conv(f"{prefix}.quant_conv", v.z_channels, v.embed_dim, 1)
    out[f"{prefix}.quantize.embedding.weight"] = (v.n_embed, v.embed_dim)
    out |= _conv(f"{prefix}.post_quant_conv", v.embed_dim, v.z_channels, 1)
    dd = f"{prefix}.decoder"
    block_in = v.ch * v.ch_mult[-1]
    out |= _conv(f"{dd}.conv_in", v.z_channels, block_in, 3) | {f"{dd}.{k}": s for k, s in mid.items()}
    for k in range(levels):
        lvl = levels - 1 - k
        for b in range(v.num_res_blocks + 1):
            out |= _resblock(f"{dd}.up_{k}_block_{b}", block_in, v.ch * v.ch_mult[lvl])
            block_in = v.ch * v.ch_mult[lvl]
            if lvl in attn:
                out |= _attnblock(f"{dd}.up_{k}_attn_{b}", block_in)
        if lvl != 0:
            out |= _conv(f"{dd}.up_{k}_upsample.conv", block_in, block_in, 3)
    return out | _norm(f"{dd}.norm_out", block_in) | _conv(f"{dd}.conv_out", block_in, v.out_ch, 3)


def _vit_vqgan_transformer(prefix: str, a: AudioVQGANConfig, layers: int) -> Shapes:
    w, inner = a.width, a.num_heads * a.head_dim
    out: Shapes = _norm(f"{prefix}.encoder_norm", w)
    for k in range(layers):
        b = f"{prefix}.encoderblock_{k}"
        out |= _norm(f"{b}.ln_1", w) | _norm(f"{b}.ln_2", w)
        out |= {f"{b}.attn.{n}.weight": (inner, w) for n in ("query", "key", "value")}
        out[f"{b}.attn.out.weight"] = (w, inner)
        out |= {f"{b}.mlp.fc1.weight": (a.mlp_dim, w), f"{b}.mlp.fc1.bias": (a.mlp_dim,)}
        out |= {f"{b}.mlp.fc2.weight": (w, a.mlp_dim), f"{b}.mlp.fc2.bias": (w,)}
    return out


def _audio_vqgan(prefix: str, a: AudioVQGANConfig) -> Shapes:
    ph, pw = a.patch_size
    out: Shapes = {f"{prefix}.quantize.embedding.weight": (a.n_embed, a.embed_dim)}
    out |= {
        f"{prefix}.encoder.embedding.weight": (a.width, ph * pw),
        f"{prefix}.encoder.embedding.bias": (a.width,),
    }
    out |= _vit_vqgan_transformer(f"{prefix}.encoder.transformer", a, a.num_encoder_layers)
    out |= {f"{prefix}.encoder.encoder_proj.weight": (a.embed_dim, a.width)}
    out |= {f"{prefix}.encoder.encoder_norm.bias": (a.embed_dim,)}
    out |= {f"{prefix}.decoder.decoder_proj.weight": (a.width, a.embed_dim)}
    out |= _vit_vqgan_transformer(f"{prefix}.decoder.transformer", a, a.num_decoder_layers)
    return out | {f"{prefix}.decoder.conv_transpose.weight": (a.width, 1, ph, pw)}


def official_shapes(cfg: UIO2Config, *, with_vqgan: bool = True) -> Shapes:
    """Every official state-dict key for `cfg` with its PyTorch shape (reference section 1.6)."""
    d = cfg.transformer.d_model
    out = _backbone(cfg)
    out["input_embedders.text.modality_embedding"] = (d,)
    for name, vit in (("image", cfg.image_vit), ("audio", cfg.audio_vit)):
        p = f"input_embedders.{name}"
        out |= {f"{p}.projection.weight": (d, 2 * vit.width), f"{p}.modality_embedding": (d,)} | _vit(p, vit)
    out |= _history("input_embedders.image_history", cfg.image_history, cfg.image_vit.width, d)
    out |= _history("input_embedders.audio_history", cfg.audio_history, cfg.audio_vit.width, d)
    for m in ("text", "image", "audio"):
        out[f"target_embedders.{m}.modality_embedding"] = (d,)
    if with_vqgan:
        out |= _image_vqgan("target_embedders.image.vqgan", cfg.image_vqgan)
        out |= _audio_vqgan("target_embedders.audio.vqgan", cfg.audio_vqgan)
    return out


def random_state_dict(cfg: UIO2Config, seed: int = 0, *, with_vqgan: bool = True) -> dict[str, np.ndarray]:
    """Small-config state dict with random float32 values (norm scales near 1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in official_shapes(cfg, with_vqgan=with_vqgan).items():
        x = rng.normal(0.0, 0.05, size=shape).astype(np.float32)
        is_norm = key.endswith(("scale", "ln_1.weight", "ln_2.weight")) or re.search(r"norm\w*\.weight$", key)
        if is_norm:
            x += 1.0
        out[key] = x
    return out


def write_synthetic_bin(cfg: UIO2Config, path: str | Path, *, chunk: int = 1 << 24) -> int:
    """A full-size `.bin` for `cfg` with cheap deterministic values, written through a scratch memmap.

    Values are filled `chunk` elements at a time and every tensor is a view of the scratch file, so
    generation never holds the model in anonymous memory. Returns the number of parameters.
    """
    from uio2_core.checkpoints.torch_io import import_torch

    torch = import_torch()
    shapes = official_shapes(cfg)
    total = sum(int(np.prod(s)) for s in shapes.values())
    with tempfile.TemporaryDirectory(dir=Path(path).parent) as tmp:
        scratch = np.memmap(Path(tmp) / "scratch.f32", dtype=np.float32, mode="w+", shape=(total,))
        for start in range(0, total, chunk):
            n = min(chunk, total - start)
            scratch[start : start + n] = np.sin(np.arange(start, start + n, dtype=np.float32)) * 0.02
        scratch.flush()
        tensors, offset = {}, 0
        for key, shape in shapes.items():  # one storage per tensor, as in the released files
            n = int(np.prod(shape))
            view = np.memmap(scratch.filename, dtype=np.float32, mode="r+", offset=offset * 4, shape=(n,))
            tensors[key] = torch.from_numpy(view).view(shape)
            offset += n
        torch.save(tensors, str(path))
        del tensors, scratch
    return total
