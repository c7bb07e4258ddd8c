"""Decode speed: prefill (encode + cross-attention keys/values) and cached per-token decoding.

    python benchmarks/decode.py --model tiny
    python benchmarks/decode.py --model large --layers 4 --new-tokens 20

Prints one JSON object. Per-token time is the compiled greedy loop's time divided by its tokens.
"""

import argparse
import json

import jax
import jax.numpy as jnp
from flax import nnx

from agent.benchmarking import bench_config, device_name, median_seconds, synthetic_batch
from uio2_core.model import UIO2Model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="tiny")
    p.add_argument("--layers", type=int, default=None, help="override encoder/decoder depth")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--text-len", type=int, default=64)
    p.add_argument("--inputs", choices=["text", "all"], default="all")
    p.add_argument("--new-tokens", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    cfg = bench_config(args.model, args.layers, args.dtype)
    model = UIO2Model(cfg, rngs=nnx.Rngs(0), with_vqgan=False)
    graphdef, state = nnx.split(model)
    batch = synthetic_batch(cfg, args.batch, args.text_len, args.inputs)
    n = args.new_tokens

    @jax.jit
    def prefill(state, batch):
        m = nnx.merge(graphdef, state)
        enc = m.encode(batch)
        return enc, m.init_cache(enc, "text", n)

    def make_decode(recompute_cross_kv: bool):
        """The cached greedy loop; optionally recomputing the cross-attention keys/values at every
        step, as the official PyTorch port does, to measure what caching them saves."""

        @jax.jit
        def decode(state, enc, cache):
            m = nnx.merge(graphdef, state)

            def body(i, carry):
                tok, cache = carry
                if recompute_cross_kv:
                    kvs = [layer.cross_kv(enc.encoded, enc.rope) for layer in m.decoder.layers()]
                    cache = [dict(c, cross_k=k, cross_v=v) for c, (k, v) in zip(cache, kvs, strict=True)]
                logits, cache = m.decode_step(enc, "text", tok, i, cache)
                return jnp.argmax(logits, -1).astype(jnp.int32), cache

            return jax.lax.fori_loop(0, n, body, (jnp.zeros((args.batch,), jnp.int32), cache))

        return decode

    decode, decode_recompute = make_decode(False), make_decode(True)
    enc, cache = jax.block_until_ready(prefill(state, batch))
    jax.block_until_ready(decode(state, enc, cache))
    jax.block_until_ready(decode_recompute(state, enc, cache))
    prefill_s = median_seconds(lambda: prefill(state, batch), args.repeats)
    decode_s = median_seconds(lambda: decode(state, enc, cache), args.repeats)
    recompute_s = median_seconds(lambda: decode_recompute(state, enc, cache), args.repeats)
    params = sum(x.size for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
    print(json.dumps({
        "benchmark": "decode", "model": cfg.name, "dtype": cfg.dtype, "device": device_name(),
        "params_without_vqgan": int(params), "batch": args.batch, "inputs": args.inputs,
        "encoder_tokens": int(enc.encoded.shape[1]), "new_tokens": n,
        "prefill_ms": 1000 * prefill_s, "ms_per_token": 1000 * decode_s / n,
        "tokens_per_s": args.batch * n / decode_s,
        "ms_per_token_recomputing_cross_kv": 1000 * recompute_s / n,
        "speedup_from_cached_cross_kv": recompute_s / decode_s,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
