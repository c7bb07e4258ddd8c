"""Decode speed: prefill (encode + cross-attention keys/values), cached per-token decoding, the
memory-bandwidth floor per token, and one VIMA action before/after the host-side fixes.

    python benchmarks/decode.py --model tiny
    python benchmarks/decode.py --model large --layers 4 --new-tokens 20

Prints one JSON object. Per-token time is the compiled greedy loop's time divided by its tokens.
"prefill_ms_attention_as_before": the same prefill with the attention dots' operands laid out as
before (heads in the middle, layers.ATTENTION_HEADS_FIRST = False), timed in the same rounds. The
floor is the bytes one decode step must read (decoder weights but the cross-attention key/value
kernels, the tied text embedding, the cached cross-attention keys/values) over the read bandwidth a
probe measures in the same run. "ms_per_token" decodes as `generate` does by default; "_packed" with
the step weights packed (`decoding.step_weights`: transposed, q|k|v and wi_0|wi_1 merged; the default
on CPU for models at least `decoding.PACK_MIN_WIDTH` wide), "_unpacked" with the kernels as they are
(as before), in the same rounds. "per_round": the floor and matmul-peak ratios taken round by round
(each round's decode / prefill against that round's probe; median, min, max). "vima_action"
times one action under the VIMA grammar: "before" = a split per call, one call per token for the
old decode length (grammar states + 1, run to the end); "after" = cached split, jump-forward,
stop at EOS, packed weights ("after_unpacked": without). "beam_search": beams before (k-fold
copies of the encoder output and cross K/V) and after (shared by a row's beams).
"""

import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from agent.benchmarking import bench_config, device_name, matmul_peak_flops, median_seconds, synthetic_batch
from policies.codecs import VimaActionCodec
from uio2_core import decoding, layers, transformer
from uio2_core.constraints import TokenDFA
from uio2_core.decoding import DecodeConfig, generate
from uio2_core.model import UIO2Model
from uio2_core.vocab import tiny_vocabulary


def _nbytes(tree) -> int:
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree)))


def read_bandwidth_gbs(nbytes: int, repeats: int) -> float:
    """Measured read bandwidth: a compiled sum over an array of `nbytes` (at least 256 MiB, so
    that it is not served from cache)."""
    x = jnp.ones((max(nbytes, 256 << 20) // 4,), jnp.float32)
    f = jax.jit(jnp.sum)
    jax.block_until_ready(f(x))
    return x.nbytes / median_seconds(lambda: f(x), repeats) / 1e9


def beam_search(model, batch, repeats: int, beams: int = 4, new_tokens: int = 8) -> dict:
    """Beam search before (k copies of the encoder output and cross K/V, whole cache gathered every
    step) and after (shared per row), timed interleaved; same tokens checked."""
    cfgs = {
        "before": DecodeConfig(new_tokens, method="beam", num_beams=beams, stop_at_eos=False,
                               beam_share_encoder=False),
        "after": DecodeConfig(new_tokens, method="beam", num_beams=beams, stop_at_eos=False),
    }  # fmt: skip
    runs = {k: (lambda c=c: generate(model, batch, "text", c).tokens) for k, c in cfgs.items()}
    tokens = {k: np.asarray(jax.block_until_ready(f())) for k, f in runs.items()}  # compile
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for k, f in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(f())
            times[k].append(time.perf_counter() - start)
    ms = {k: 1000 * float(np.median(v)) for k, v in times.items()}
    same = bool((tokens["before"] == tokens["after"]).all())
    return {"beams": beams, "new_tokens": new_tokens, "ms_before": ms["before"], "ms_after": ms["after"],
            "speedup": ms["before"] / ms["after"], "same_tokens": same}  # fmt: skip


def _with_history_latents(model, batch: dict) -> dict | None:
    """The batch with its history frames replaced by their latents (what an agent holds in an
    episode's steady state: each frame went through the ViT and perceiver once, when it arrived)."""
    if "image_history" not in batch:
        return None
    frames = batch["image_history"]
    b, t = frames.shape[:2]
    masks = batch.get("image_history_mask")
    flat_masks = None if masks is None else masks.reshape(b * t, -1)
    latents = decoding.history_latents(model, frames.reshape(b * t, *frames.shape[2:]), flat_masks)
    out = {k: v for k, v in batch.items() if not k.startswith("image_history")}
    out["image_history_latents"] = jax.block_until_ready(latents.reshape(b, t, *latents.shape[1:]))
    return out


def vima_action(model, batch, repeats: int, names: list[str]) -> dict:
    """One VIMA action's decode (prefill included), before and after, side by side. "after" is an
    episode's first step (history frames through the ViT and perceiver in the call);
    "after_cached_history" a later step (the frames' latents computed when they arrived)."""
    codec = VimaActionCodec(tiny_vocabulary())
    b = next(iter(batch.values())).shape[0]
    dfa = codec.grammar(0) if b == 1 else TokenDFA.stack([codec.grammar(0)] * b)
    old_len = int((np.asarray(codec.grammar(0).transitions) >= 0).any(axis=1).sum()) + 1
    cached = _with_history_latents(model, batch)
    variants = {
        "before": (False, DecodeConfig(old_len, jump_forward=0, stop_at_eos=False, packed_weights=False),
                   batch),
        "after": (True, DecodeConfig(codec.grammar_length(0)), batch),
        "after_unpacked": (True, DecodeConfig(codec.grammar_length(0), packed_weights=False), batch),
    }
    if cached is not None:
        variants["after_cached_history"] = (True, DecodeConfig(codec.grammar_length(0)), cached)
    unknown = set(names) - set(variants)
    if unknown:
        raise SystemExit(f"unknown --vima variants {sorted(unknown)}; expected some of {sorted(variants)}")
    variants = {k: v for k, v in variants.items() if k in names}
    out, runs = {}, {}
    for name, (caching, cfg, inputs) in variants.items():
        decoding.HOST_CACHING = caching
        runs[name] = lambda cfg=cfg, x=inputs: generate(model, x, "text", cfg, constraint=dfa)
        res = jax.block_until_ready(runs[name]())  # compile
        start = time.perf_counter()
        for _ in range(repeats):
            decoding.split_model(model)
        split_ms = 1000 * (time.perf_counter() - start) / repeats
        out[name] = {"model_calls": int(res.calls), "split_ms": split_ms,
                     "text": codec.to_text(np.asarray(res.tokens)[0]), "times": []}  # fmt: skip
    # yardstick: the bare prefill (encode + cross K/V, full frames), timed in the same rounds, so
    # that an action can be compared with figures taken on a less loaded machine
    graphdef, state = nnx.split(model)
    prefill = jax.jit(lambda s, x: (m := nnx.merge(graphdef, s)).init_cache(m.encode(x), "text", 8))
    jax.block_until_ready(prefill(state, batch))
    prefill_times = []
    for _ in range(repeats):  # interleaved, so that a shared machine's load hits both alike
        prefill_times.append(median_seconds(lambda: prefill(state, batch), 1))
        for name, (caching, *_) in variants.items():
            decoding.HOST_CACHING = caching
            start = time.perf_counter()
            jax.block_until_ready(runs[name]())
            out[name]["times"].append(time.perf_counter() - start)
    out["prefill_s"] = float(np.median(prefill_times))
    for name in variants:
        out[name]["s_per_action"] = float(np.median(out[name].pop("times")))
        out[name]["over_prefill"] = out[name]["s_per_action"] / out["prefill_s"]
    decoding.HOST_CACHING = True
    out["same_tokens"] = len({v["text"] for k, v in out.items() if k in variants}) == 1
    if "before" in out and "after" in out:
        out["speedup"] = out["before"]["s_per_action"] / out["after"]["s_per_action"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="tiny")
    p.add_argument("--layers", type=int, default=None, help="override encoder/decoder depth")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--text-len", type=int, default=64)
    p.add_argument(
        "--inputs",
        choices=["text", "all", "vima"],
        default="all",
        help="vima: text, image and 4 history frames (the issue's VIMA-sized example)",
    )
    p.add_argument("--new-tokens", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-beam", action="store_true", help="leave out the beam-search comparison")
    p.add_argument(
        "--vima-only",
        action="store_true",
        help="only the VIMA action (a large model's separate run: less memory held at once)",
    )
    p.add_argument("--no-recompute", action="store_true", help="leave out the recomputed cross-K/V loop")
    p.add_argument(
        "--vima",
        default="before,after,after_unpacked,after_cached_history",
        help="VIMA-action variants to time (comma-separated; empty: none)",
    )
    args = p.parse_args()

    cfg = bench_config(args.model, args.layers, args.dtype)
    model = UIO2Model(cfg, rngs=nnx.Rngs(0), with_vqgan=False)
    graphdef, state = nnx.split(model)
    batch = synthetic_batch(cfg, args.batch, args.text_len, "text" if args.inputs == "text" else "all")
    if args.inputs == "vima":
        batch = {k: v for k, v in batch.items() if not k.startswith("audio")}
    n = args.new_tokens

    if args.vima_only:
        variants = [v for v in args.vima.split(",") if v]
        out = {"benchmark": "decode", "model": cfg.name, "dtype": cfg.dtype, "device": device_name(),
               "inputs": args.inputs, "repeats": args.repeats,
               "vima_action": vima_action(model, batch, args.repeats, variants)}  # fmt: skip
        print(json.dumps(out, indent=2))
        return

    def make_prefill():
        @jax.jit
        def prefill(state, batch):
            m = nnx.merge(graphdef, state)
            enc = m.encode(batch)
            return enc, m.init_cache(enc, "text", n)

        return prefill

    def make_decode(recompute_cross_kv: bool):
        """The cached greedy loop; optionally recomputing the cross-attention keys/values at every
        step, as the official PyTorch port does, to measure what caching them saves. `weights`: the
        step weights packed (`decoding.step_weights`), or None for the kernels as they are."""

        @jax.jit
        def decode(state, weights, enc, cache):
            m = decoding.use_step_weights(nnx.merge(graphdef, state), weights, "text")

            def body(i, carry):
                tok, cache = carry
                if recompute_cross_kv:
                    kvs = [layer.cached_cross_kv(enc.encoded, enc.rope) for layer in m.decoder.layers()]
                    cache = [dict(c, cross_k=k, cross_v=v) for c, (k, v) in zip(cache, kvs, strict=True)]
                logits, cache = m.decode_step(enc, "text", tok, i, cache)
                return jnp.argmax(logits, -1).astype(jnp.int32), cache

            return jax.lax.fori_loop(0, n, body, (jnp.zeros((args.batch,), jnp.int32), cache))

        return decode

    prefill = make_prefill()
    cost = prefill.lower(state, batch).compile().cost_analysis()
    prefill_flops = float((cost[0] if isinstance(cost, list) else cost).get("flops", 0.0))
    enc, cache = jax.block_until_ready(prefill(state, batch))
    # the prefill as before: attention dots with the heads in the middle of their operands
    # (layers.ATTENTION_HEADS_FIRST = False), traced with the switch off; same results expected
    prefill_as_before = make_prefill()
    layers.ATTENTION_HEADS_FIRST = False
    try:
        enc_before, _ = jax.block_until_ready(prefill_as_before(state, batch))
    finally:
        layers.ATTENTION_HEADS_FIRST = True
    prefill_max_diff = float(jnp.max(jnp.abs(enc_before.encoded - enc.encoded)))
    del enc_before
    # decode loops, each with the cache its prefill made: "cache_as_before" keeps keys/values
    # [B, L, H, D] (transformer.CACHE_LAYOUT_FOR_DOT = False), which XLA transposes every step
    packed = DecodeConfig().packs(model)  # what decoding does by default for this model and backend
    blocks = decoding.step_weights(model, "text", True)
    default = blocks if packed else None
    loops = {"decode": (make_decode(False), cache, default), "packed": (make_decode(False), cache, blocks),
             "unpacked": (make_decode(False), cache, None)}  # fmt: skip
    as_before = [{k: jnp.transpose(v, (0, 3, 1, 2)) for k, v in c.items()} for c in cache]
    transformer.CACHE_LAYOUT_FOR_DOT = False
    try:
        loops["cache_as_before"] = (make_decode(False), as_before, default)
        jax.block_until_ready(loops["cache_as_before"][0](state, default, enc, as_before))  # traced with it
    finally:
        transformer.CACHE_LAYOUT_FOR_DOT = True
    if not args.no_recompute:
        loops["recompute"] = (make_decode(True), cache, default)
    first = {k: np.asarray(jax.block_until_ready(f(state, w, enc, c))[0]) for k, (f, c, w) in loops.items()}
    params = sum(x.size for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
    # what a step must read: the decoder's parameters less the cross-attention key/value kernels (their
    # products are the cached cross K/V), the tied text embedding, the cross K/V
    cross_kernels = [
        (layer.encoder_decoder_attention.key.kernel[...], layer.encoder_decoder_attention.value.kernel[...])
        for layer in model.decoder.layers()
    ]
    step_bytes = (
        _nbytes(nnx.state(model.decoder, nnx.Param))
        - _nbytes(cross_kernels)
        + _nbytes(model.token_embedder("text").embedding[...])
        + _nbytes([(c["cross_k"], c["cross_v"]) for c in cache])
    )
    # every measurement once per round, rounds interleaved: a shared machine's load hits all alike
    names = ["prefill", "prefill_as_before", "peak", "bandwidth", *loops]
    times: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(args.repeats):
        times["peak"].append(matmul_peak_flops(repeats=1))
        times["prefill"].append(median_seconds(lambda: prefill(state, batch), 1))
        times["prefill_as_before"].append(median_seconds(lambda: prefill_as_before(state, batch), 1))
        times["bandwidth"].append(read_bandwidth_gbs(step_bytes, 1))
        for name, (f, c, w) in loops.items():
            times[name].append(median_seconds(lambda f=f, c=c, w=w: f(state, w, enc, c), 1))
    med = {k: float(np.median(v)) for k, v in times.items()}
    peak, prefill_s, gbs, decode_s = med["peak"], med["prefill"], med["bandwidth"], med["decode"]
    floor_ms = 1000 * step_bytes / (gbs * 1e9)
    # the same ratios round by round (each round's decode against that round's probe), then the median:
    # the probes move with the machine's state as much as the decode does
    per_token = [d / n for d in times["decode"]]
    floors = [step_bytes / (g * 1e9) for g in times["bandwidth"]]
    achieved = [prefill_flops / p for p in times["prefill"]]
    rounds = {
        "ms_per_token_over_floor": [t / f for t, f in zip(per_token, floors, strict=True)],
        "prefill_pct_of_matmul_peak": [100 * a / k for a, k in zip(achieved, times["peak"], strict=True)],
    }
    result = {
        "benchmark": "decode", "model": cfg.name, "dtype": cfg.dtype, "device": device_name(),
        "params_without_vqgan": int(params), "batch": args.batch, "inputs": args.inputs,
        "encoder_tokens": int(enc.encoded.shape[1]), "new_tokens": n, "repeats": args.repeats,
        "prefill_ms": 1000 * prefill_s, "prefill_gflop": prefill_flops / 1e9,
        "prefill_gflop_s": prefill_flops / prefill_s / 1e9, "matmul_peak_gflop_s": peak / 1e9,
        "prefill_pct_of_matmul_peak": 100 * prefill_flops / prefill_s / peak,
        "prefill_ms_attention_as_before": 1000 * med["prefill_as_before"],
        "speedup_from_heads_first_attention": med["prefill_as_before"] / prefill_s,
        "prefill_max_abs_diff_attention_as_before": prefill_max_diff,
        "ms_per_token": 1000 * decode_s / n,
        "tokens_per_s": args.batch * n / decode_s,
        "packed_by_default": packed, "ms_per_token_packed": 1000 * med["packed"] / n,
        "ms_per_token_unpacked": 1000 * med["unpacked"] / n,
        "speedup_from_packed_weights": med["unpacked"] / med["packed"],
        "same_tokens_unpacked": bool((first["packed"] == first["unpacked"]).all()),
        "ms_per_token_over_floor_unpacked": 1000 * med["unpacked"] / n / floor_ms,
        "ms_per_token_cache_as_before": 1000 * med["cache_as_before"] / n,
        "speedup_from_cache_layout": med["cache_as_before"] / decode_s,
        "bytes_read_per_token": step_bytes, "read_bandwidth_gb_s": gbs, "floor_ms_per_token": floor_ms,
        "ms_per_token_over_floor": 1000 * decode_s / n / floor_ms,
        "per_round": {k: {"median": float(np.median(v)), "min": min(v), "max": max(v)}
                      for k, v in rounds.items()},
        "ms_per_token_over_floor_cache_as_before": 1000 * med["cache_as_before"] / n / floor_ms,
    }  # fmt: skip
    if "recompute" in med:
        result["ms_per_token_recomputing_cross_kv"] = 1000 * med["recompute"] / n
        result["speedup_from_cached_cross_kv"] = med["recompute"] / decode_s
    print(json.dumps(result), file=sys.stderr, flush=True)  # progress: a long run may not finish
    variants = [v for v in args.vima.split(",") if v]
    result["vima_action"] = vima_action(model, batch, args.repeats, variants) if variants else None
    print(json.dumps(result["vima_action"]), file=sys.stderr, flush=True)
    result["beam_search"] = None if args.no_beam else beam_search(model, batch, args.repeats)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
