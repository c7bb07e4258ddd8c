"""Host overhead of the UIO2 policy: `policy.act` against the bare jitted model call, before/after.

    python benchmarks/bench_agent.py --model tiny
    python benchmarks/bench_agent.py --model large --layers 2 --repeats 3

Per env and batch size, timed interleaved in one run (a shared machine's load hits all alike):
- `act_ms`: one `policy.act_batch` (prompting, preprocessing, encode, constrained decode, codec) in
  steady state (history full, one new frame per row per step);
  `before`: `cache_inputs=False` and `decoding.HOST_CACHING=False` (text tokenised, every history
  frame preprocessed and encoded, the model split and its graph hashed again at every step);
  `after`: the per-episode caches (prompt ids, history latents) and the cached split;
- `bare_ms`: the jitted model call alone (encode + the same constrained decode) on the same
  step's inputs already on the device: history as frames (what a caller without caches runs), and
  `bare_latents_ms` with the history as kept latents (what the cached policy's model call runs);
- ratios act / bare. Prints JSON.
"""

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
from flax import nnx

from agent.benchmarking import bench_config, device_name
from agent.envs import resolve_env
from policies.base import TaskSpec
from policies.uio2_policy import UIO2Policy
from uio2_core import decoding
from uio2_core.decoding import DecodeConfig
from uio2_core.model import UIO2Model
from uio2_core.vocab import tiny_vocabulary


def _bare_call(policy: UIO2Policy, obs: list, latents: bool):
    """The model call of the policy's next step, inputs prepared on the device (not timed)."""
    examples = [policy._example(r, o) for r, o in zip(policy.rows, obs, strict=True)]
    batch = {k: jnp.asarray(v) for k, v in policy.builder.collate(examples, not latents).items()}
    if latents:
        missing = [[x is None for x in r.history.history_latents()] for r in policy.rows]
        batch["image_history_latents"], batch["image_history_latents_mask"] = policy._history_latents()
        for row, gaps in zip(policy.rows, missing, strict=True):  # the policy's own act computes these
            for slot in (s for s, gap in enumerate(gaps) if gap):
                row.history.set_latent(slot, None)
    grammar, max_len = policy._grammar()
    cfg = DecodeConfig(**{**policy.decode_cfg.__dict__, "max_new_tokens": max_len})
    static, state = decoding._split(policy.model)
    rng = jax.random.key(0)
    return lambda: decoding._generate(static, state, batch, None, "text", cfg, rng, grammar).tokens


def _timed(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def measure(model: UIO2Model, env_name: str, batch: int, repeats: int, max_frames: int, **env_kwargs) -> dict:
    entry = resolve_env(env_name, **env_kwargs)[0]
    envs = [entry.make() for _ in range(batch)]
    obs, specs = [], []
    for i, env in enumerate(envs):
        o, info = env.reset(seed=i)
        obs.append(o)
        specs.append(TaskSpec.from_env(env, info, seed=i, env_id=env_name))
    vocab = tiny_vocabulary()
    policies = {
        "before": UIO2Policy(model, vocab, max_frames=max_frames, text_len=128, cache_inputs=False),
        "after": UIO2Policy(model, vocab, max_frames=max_frames, text_len=128),
    }
    for p in policies.values():
        p.reset_batch(specs)
    times: dict[str, list[float]] = {k: [] for k in ("before", "after", "bare", "bare_latents")}
    decoded = {}
    try:
        for step in range(max_frames + repeats):  # the first max_frames steps fill the history (compiles)
            bare = _bare_call(policies["after"], obs, latents=False)
            bare_latents = _bare_call(policies["after"], obs, latents=True)
            for name, policy in policies.items():
                decoding.HOST_CACHING = name == "after"
                t = _timed(lambda p=policy: p.act_batch(obs))
                decoded[name] = policy.last_info.get("decoded_text")
                if step >= max_frames:
                    times[name].append(t)
            decoding.HOST_CACHING = True
            t_bare, t_lat = _timed(bare), _timed(bare_latents)
            if step >= max_frames:
                times["bare"].append(t_bare)
                times["bare_latents"].append(t_lat)
    finally:
        decoding.HOST_CACHING = True
        for env in envs:
            env.close()
    ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
    return {
        "batch": batch,
        "act_ms": {"before": ms["before"], "after": ms["after"]},
        "bare_ms": ms["bare"],
        "bare_latents_ms": ms["bare_latents"],
        "act_over_bare": {"before": ms["before"] / ms["bare"], "after": ms["after"] / ms["bare"]},
        "after_act_over_bare_latents": ms["after"] / ms["bare_latents"],
        "speedup_after_vs_before": ms["before"] / ms["after"],
        "ms_per_decision_after": ms["after"] / batch,
        "same_decoded_text": decoded["before"] == decoded["after"],
        "decoded": decoded["after"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="tiny")
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--max-frames", type=int, default=4)
    p.add_argument("--envs", nargs="+", default=["pointnav", "tabletop/visual_manipulation"])
    args = p.parse_args()
    cfg = bench_config(args.model, args.layers)
    model = UIO2Model(cfg, rngs=nnx.Rngs(0), with_vqgan=False)
    out = {"benchmark": "agent_decision", "model": cfg.name, "device": device_name(),
           "history_frames": args.max_frames, "repeats": args.repeats}  # fmt: skip
    for env_name in args.envs:
        kwargs = dict(width=128, height=128) if env_name == "pointnav" else {}
        out[env_name] = [
            measure(model, env_name, b, args.repeats, args.max_frames, **kwargs) for b in args.batch
        ]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
