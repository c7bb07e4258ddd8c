"""T5X checkpoint directories (`large-3m`, ...): a msgpack `checkpoint` tree + one tensorstore array each.

Needs `msgpack` and `tensorstore` (pip install -e .[t5x]), imported lazily. JAX names are mapped to
the official PyTorch keys with the conversion rules of the reference (section 1.7, rules 1-6), then
to our parameters through the same schema as HF imports. T5X arrays already have our layouts
(kernels [in, out], convs HWIO, the unflipped ConvTranspose), so the source presents them in the
PyTorch layout as views and the shared loader turns them back without copies.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from uio2_core.checkpoints.materialize import load_from_source
from uio2_core.checkpoints.schema import CheckpointError, build_schema, by_official_key, to_official
from uio2_core.config import UIO2Config
from uio2_core.model import UIO2Model

CHECKPOINT_FILE = "checkpoint"

_PREFIXES = {
    "input_text_encoder": "input_embedders.text",
    "input_image_encoder": "input_embedders.image",
    "input_audio_encoder": "input_embedders.audio",
    "input_encoders_image_history": "input_embedders.image_history",
    "input_encoders_audio_history": "input_embedders.audio_history",
    "target_encoders_text": "target_embedders.text",
    "target_encoders_image": "target_embedders.image",
    "target_encoders_audio": "target_embedders.audio",
}
_PARTS = {
    "PerceiverResampler_0": "perceiver",
    "resampler_latents": "latents",
    "discrete_vae": "vqgan",
    "Transformer_0": "transformer",
    "MultiHeadDotProductAttention_0": "attn",
    "LayerNormWithBias_0": "ln_1",
    "LayerNormWithBias_1": "ln_2",
    "ConvTranspose_0": "conv_transpose",
}
# Only inside the ViT / AST (the image VQ-GAN's ResBlocks have their own `norm1`, `norm2`).
_VIT_PARTS = {
    "MLP_0": "mlp",
    "c_fc": "fc1",
    "c_proj": "fc2",
    "norm1": "ln_1",
    "norm2": "ln_2",
    "pos_embed": "positional_embedding",
}


def t5x_to_official(name: str) -> str:
    """A flattened JAX parameter name ("a.b.c" or "a/b/c") -> the official PyTorch key."""
    parts = re.split(r"[./]", name)
    if parts and parts[0] == "target":
        parts = parts[1:]
    if parts and parts[0] in _PREFIXES:
        parts = _PREFIXES[parts[0]].split(".") + parts[1:]
    in_vit = "vision_transformer" in parts
    out: list[str] = []
    i = 0
    while i < len(parts):
        p = parts[i]
        if p == "MlpBlock_0" and i + 1 < len(parts) and parts[i + 1].startswith("DenseGeneral_"):
            out += ["mlp", f"fc{int(parts[i + 1].rsplit('_', 1)[1]) + 1}"]
            i += 2
            continue
        m = re.fullmatch(r"ResidualAttentionBlock_(\d+)", p)
        if m:
            out += ["resblocks", m.group(1)]
        elif p.endswith("layer_norm"):
            out.append(p.removesuffix("layer_norm") + "norm")
        else:
            out.append(_VIT_PARTS.get(p, _PARTS.get(p, p)) if in_vit else _PARTS.get(p, p))
        i += 1
    key = ".".join(out)
    if in_vit:
        key = re.sub(r"\.attn\.(query|key|value)\.kernel$", r".attn.\1_in_proj_weight", key)
        key = re.sub(r"\.attn\.(query|key|value)\.bias$", r".attn.\1_in_proj_bias", key)
        key = re.sub(r"\.attn\.out\.", ".attn.out_proj.", key)
    if (in_vit or ".vqgan." in key) and key.endswith(".scale"):
        key = key[: -len("scale")] + "weight"
    if key.endswith(".kernel"):
        key = key[: -len("kernel")] + "weight"
    elif key.endswith(("token_embedder.embedding", ".quantize.embedding.embedding")):
        key = key[: -len("embedding")] + "weight"
    elif key.endswith(".quantize.embedding"):  # rule 5: `quantize/embedding` is the codebook itself
        key += ".weight"
    return key


def is_t5x_dir(path: str | Path) -> bool:
    return (Path(path) / CHECKPOINT_FILE).is_file()


def _is_spec(x: Any) -> bool:
    return isinstance(x, dict) and "driver" in x and "kvstore" in x


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and not _is_spec(tree):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out |= _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return {prefix: tree}


class T5XSource:
    """The `target` parameters of a T5X checkpoint, keyed by official PyTorch keys."""

    def __init__(self, path: str | Path, cfg: UIO2Config):
        try:
            import msgpack  # noqa: F401
            import tensorstore  # noqa: F401
        except ImportError as e:
            raise ImportError("T5X checkpoints need msgpack and tensorstore: pip install -e .[t5x]") from e
        from flax.serialization import msgpack_restore

        self.dir = Path(path)
        self.name = str(self.dir)
        try:
            tree = msgpack_restore((self.dir / CHECKPOINT_FILE).read_bytes())
        except FileNotFoundError:
            raise
        except Exception as e:
            raise CheckpointError(f"{self.dir}: cannot read the T5X `checkpoint` msgpack ({e})") from e
        if "target" not in tree:
            raise CheckpointError(f"{self.dir}: T5X checkpoint has no `target` parameters")
        known = by_official_key(build_schema(cfg, with_vqgan=True))
        self._leaves: dict[str, Any] = {}
        self._transform: dict[str, str] = {}
        for name, leaf in _flatten(tree["target"]).items():
            key = t5x_to_official(name)
            self._leaves[key] = leaf
            self._transform[key] = known[key].transform if key in known else "identity"
        self._meta: dict[str, tuple[tuple[int, ...], np.dtype]] = {}

    def _open(self, spec: dict):
        import tensorstore as ts

        spec = dict(spec)
        kv = (
            dict(spec["kvstore"])
            if isinstance(spec["kvstore"], dict)
            else {"driver": "file", "path": spec["kvstore"]}
        )
        if kv.get("driver", "file") == "file" and not Path(kv["path"]).is_absolute():
            kv["path"] = str(self.dir / kv["path"])
        spec["kvstore"] = kv
        return ts.open(spec, open=True, read=True).result()

    def _shape_dtype(self, key: str) -> tuple[tuple[int, ...], np.dtype]:
        if key not in self._meta:
            leaf = self._leaves[key]
            if _is_spec(leaf):
                arr = self._open(leaf)
                shape, dtype = tuple(arr.shape), np.dtype(arr.dtype.numpy_dtype)
            else:
                leaf = np.asarray(leaf)
                shape, dtype = leaf.shape, leaf.dtype
            t = self._transform[key]
            self._meta[key] = (tuple(to_official(np.empty(shape, np.bool_), t).shape), dtype)  # type: ignore[arg-type]
        return self._meta[key]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: self._shape_dtype(k)[0] for k in self._leaves}

    def dtype(self, key: str) -> np.dtype:
        return self._shape_dtype(key)[1]

    def read(self, key: str) -> np.ndarray:
        leaf = self._leaves[key]
        x = self._open(leaf).read().result() if _is_spec(leaf) else np.asarray(leaf)
        return to_official(x, self._transform[key])  # type: ignore[arg-type]

    def release(self, key: str) -> None:
        self._leaves.pop(key, None)

    def close(self) -> None:
        self._leaves = {}


def import_t5x(
    path: str | Path, cfg: UIO2Config | None = None, *, with_vqgan: bool = True, progress: bool = False
) -> UIO2Model:
    """Load a T5X checkpoint; T5X directories carry no model config, so the size must be given
    (`cfg`) or be guessable from the directory name (`large-3m`, `xl-3m`, `xxl-3m`)."""
    if cfg is None:
        from uio2_core.config import get_config

        size = Path(path).name.split("-")[0]
        if size not in ("large", "xl", "xxl"):
            raise ValueError(f"{path}: cannot tell the model size of a T5X checkpoint; pass cfg")
        cfg = get_config(size)
    return load_from_source(T5XSource(path, cfg), cfg, with_vqgan=with_vqgan, progress=progress)
