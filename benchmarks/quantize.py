"""int8 weight-only and bf16 decode steps against float32 (issue 18): is either worth keeping?

    python benchmarks/quantize.py                  # large's step shapes, 24 layers
    python benchmarks/quantize.py --layers 4 --repeats 3

Prints one JSON object. Two parts, both measured in this run:

- "speed": one decode step's products at a model's step shapes (`--model`, default large), in the
  packed layout decoding uses on CPU (`decoding.STEP_PACKS`: kernels [out, in], q|k|v and wi_0|wi_1
  merged; each product's whole output feeds the next, as in a decoder layer, then the tied output
  embedding), compiled, rounds interleaved, medians. Weight formats: "float32" (what decoding runs);
  "int8_dequant_dot" (int8 kernel, per-output-row float32 scale, converted to float32 in the product);
  "int8_fused_reduce" (the product as a multiply-and-sum over the int8 kernel, which XLA fuses into one
  loop with the conversion); "bfloat16" (bf16 kernels and inputs, float32 accumulation).
- "accuracy": the official PyTorch port's parity model and inputs (tests/data/official_port, the
  port's own checkpoint; needs torch to read it): its 20-step greedy decoding with the decoder's step
  weights in each format (int8: per-output-row absmax scales, weights dequantised; bf16: weights rounded
  to bf16; encoder and cross keys/values in float32) against float32: tokens that differ, and the largest
  step-logit difference. The port's random tiny model has no trained margins: a format that keeps its
  tokens here may still change a trained model's actions.

The figures decide: a format stays out of decoding unless it is faster than float32 on this backend
and keeps the greedy tokens (docs/speed_vs_port.md).
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from agent.benchmarking import bench_config, device_name
from uio2_core import decoding

PARITY = Path(__file__).resolve().parent.parent / "tests" / "data" / "official_port"


def _int8_rows(w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-output-row (axis 0) absmax int8 of a [out, in] kernel -> (int8 kernel, float32 scales [out])."""
    scale = jnp.maximum(jnp.abs(w).max(axis=1), 1e-12) / 127.0
    return jnp.clip(jnp.round(w / scale[:, None]), -127, 127).astype(jnp.int8), scale.astype(jnp.float32)


def _product(fmt: str):
    """y = x W^T for a [out, in] kernel held in `fmt` (x [in], float32 out)."""
    if fmt == "float32":
        return lambda x, w: w @ x
    if fmt == "bfloat16":
        return lambda x, w: jnp.dot(w, x.astype(jnp.bfloat16), preferred_element_type=jnp.float32)
    if fmt == "int8_dequant_dot":
        return lambda x, w: (w[0].astype(jnp.float32) @ x) * w[1]
    if fmt == "int8_fused_reduce":
        return lambda x, w: jnp.sum(w[0].astype(jnp.float32) * x[None, :], axis=1) * w[1]
    raise ValueError(fmt)


def step_shapes(cfg) -> tuple[list[dict[str, tuple[int, int]]], tuple[int, int]]:
    t = cfg.transformer
    inner = t.num_heads * t.head_dim
    layer = {
        "self_attention.qkv": (3 * inner, t.d_model), "self_attention.out": (t.d_model, inner),
        "encoder_decoder_attention.query": (inner, t.d_model),
        "encoder_decoder_attention.out": (t.d_model, inner),
        "mlp.wi": (2 * t.mlp_dim, t.d_model), "mlp.wo": (t.d_model, t.mlp_dim),
    }  # fmt: skip
    assert set(layer) == set(decoding.STEP_PACKS)
    return [layer] * t.num_decoder_layers, (t.text_vocab_size, t.d_model)


def speed(cfg, repeats: int) -> dict:
    """Median seconds of one step's products per weight format (random weights, same for all)."""
    layers, vocab = step_shapes(cfg)
    key = jax.random.key(0)
    f32 = []
    for shapes in layers:
        f32.append({})
        for name, shape in shapes.items():
            key, sub = jax.random.split(key)
            f32[-1][name] = jax.random.normal(sub, shape, jnp.float32) / np.sqrt(shape[1])
    table = jax.random.normal(key, vocab, jnp.float32)
    formats = {
        "float32": (f32, table),
        "bfloat16": jax.tree.map(lambda w: w.astype(jnp.bfloat16), (f32, table)),
        "int8_dequant_dot": jax.tree.map(_int8_rows, (f32, table)),
    }
    formats["int8_fused_reduce"] = formats["int8_dequant_dot"]
    nbytes = {k: sum(x.nbytes for x in jax.tree.leaves(v)) for k, v in formats.items()}

    def make(fmt: str):
        dot = _product(fmt)

        @jax.jit
        def step(x, weights):
            layers, table = weights
            for w in layers:
                q, k, v = jnp.split(dot(x, w["self_attention.qkv"]), 3)
                x = x + dot(q * k + v, w["self_attention.out"])
                x = x + dot(dot(x, w["encoder_decoder_attention.query"]), w["encoder_decoder_attention.out"])
                g0, g1 = jnp.split(dot(x, w["mlp.wi"]), 2)
                x = x + dot(jax.nn.silu(g0) * g1, w["mlp.wo"])
                x = x * jax.lax.rsqrt(jnp.mean(x * x) + 1e-6)
            return jnp.argmax(dot(x, table))

        return step

    x = jax.random.normal(jax.random.key(1), (cfg.transformer.d_model,), jnp.float32)
    steps = {k: make(k) for k in formats}
    tokens = {k: int(jax.block_until_ready(f(x, formats[k]))) for k, f in steps.items()}  # compile
    times: dict[str, list[float]] = {k: [] for k in formats}
    for _ in range(repeats):
        for k, f in steps.items():
            start = time.perf_counter()
            jax.block_until_ready(f(x, formats[k]))
            times[k].append(time.perf_counter() - start)
    ms = {k: 1000 * float(np.median(v)) for k, v in times.items()}
    return {
        "model": cfg.name, "layers": cfg.transformer.num_decoder_layers,
        "ms_per_step": ms, "weight_bytes": nbytes,
        "speedup_over_float32": {k: ms["float32"] / v for k, v in ms.items()},
        "gb_s_of_weights": {k: nbytes[k] / ms[k] / 1e6 for k in ms},
        "argmax_token": tokens,
    }  # fmt: skip


def _formatted(weights: decoding.StepWeights, fmt: str) -> decoding.StepWeights:
    """The packed step weights as `fmt` ("bfloat16" or "int8") stores them, back in float32 (the numbers
    the format holds)."""
    if fmt == "bfloat16":
        return jax.tree.map(lambda w: w.astype(jnp.bfloat16).astype(jnp.float32), weights)

    layers = tuple(
        {k: (lambda q, s: q.astype(jnp.float32) * s[:, None])(*_int8_rows(w)) for k, w in packs.items()}
        for packs in weights.layers
    )
    q, s = _int8_rows(weights.logits_t.T)  # per vocabulary row
    return decoding.StepWeights(layers, (q.astype(jnp.float32) * s[:, None]).T)


def accuracy() -> dict | None:
    """Greedy decoding of the port's parity model with each format's step weights against float32."""
    try:
        from uio2_core.checkpoints import hf
        from uio2_core.checkpoints.formats import load_model
    except ImportError as err:  # pragma: no cover - torch missing
        return {"skipped": f"reading the port's checkpoint needs torch ({err})"}
    cfg = hf.read_config(PARITY)
    erf = {k: dataclasses.replace(getattr(cfg, k), gelu="erf") for k in ("image_history", "audio_history")}
    model = load_model(PARITY, cfg.replace(**erf), with_vqgan=False)
    ins = {k: np.asarray(v) for k, v in np.load(PARITY / "inputs.npz").items()}
    ins = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in ins.items()}
    keys = ("text", "image", "image_history", "audio", "audio_history")
    batch = {k: jnp.asarray(ins[k]) for k in keys}
    batch |= {f"{k}_mask": jnp.asarray(ins[f"{k}_mask"]).astype(bool) for k in keys[1:]}
    port = np.load(PARITY / "outputs.npz")["greedy_tokens"]
    steps = port.shape[1]
    graphdef, state = nnx.split(model)
    packed = decoding.step_weights(model, "text", True)

    @jax.jit
    def greedy(state, weights, batch):
        m = decoding.use_step_weights(nnx.merge(graphdef, state), weights, "text")
        enc = m.encode(batch)
        cache, token, toks, logits = m.init_cache(enc, "text", steps), jnp.zeros((2,), jnp.int32), [], []
        for i in range(steps):
            out, cache = m.decode_step(enc, "text", token, jnp.int32(i), cache)
            token = jnp.argmax(out, -1).astype(jnp.int32)
            toks.append(token)
            logits.append(out)
        return jnp.stack(toks, 1), jnp.stack(logits, 1)

    ref_tokens, ref_logits = map(np.asarray, greedy(state, packed, batch))
    same = bool((ref_tokens == port).all())
    out = {"rows": int(port.shape[0]), "steps": steps, "float32_equals_port": same}
    for fmt in ("bfloat16", "int8"):
        tokens, logits = map(np.asarray, greedy(state, _formatted(packed, fmt), batch))
        differ = tokens != ref_tokens
        out[fmt] = {
            "tokens_differing": int(differ.sum()),
            "first_difference_step": int(np.argmax(differ.any(0))) if differ.any() else None,
            "max_abs_logit_diff": float(np.abs(logits - ref_logits).max()),
            "logit_scale": float(np.abs(ref_logits).max()),
        }  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="large")
    p.add_argument("--layers", type=int, default=None, help="override the decoder depth")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    cfg = bench_config(args.model, args.layers)
    result = {"benchmark": "quantize", "device": device_name(), "speed": speed(cfg, args.repeats)}
    print(json.dumps(result["speed"]), file=sys.stderr, flush=True)
    result["accuracy"] = accuracy()
    s = result["speed"]["speedup_over_float32"]
    a = result["accuracy"] or {}
    fastest = {"int8": max(s["int8_dequant_dot"], s["int8_fused_reduce"]), "bfloat16": s["bfloat16"]}
    # worth keeping: faster than float32 here and the same greedy tokens on the parity inputs
    result["worth_keeping"] = {
        fmt: bool(fastest[fmt] > 1.0 and a.get(fmt, {}).get("tokens_differing", 1) == 0) for fmt in fastest
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
