"""Host overhead of the UIO2 policy: `policy.act` against the bare jitted model call, before/after.

    python benchmarks/bench_agent.py --model tiny
    python benchmarks/bench_agent.py --model large --layers 2 --repeats 3
    python benchmarks/bench_agent.py --model tiny --envs pointnav-audio

Per env and batch size, timed interleaved in one run (a shared machine's load hits all alike), in
steady state (history full, one new frame per row per step):
- `act_ms`: one `policy.act_batch` (prompting, preprocessing, encode, constrained decode, codec):
  `uncached`: `cache_inputs=False`, `decoding.HOST_CACHING=False`, host preprocessing (text
  tokenised, every history frame preprocessed and encoded, the model split again at every step);
  `before`: the per-episode caches (prompt ids, history latents), images preprocessed on the host
  in numpy (`device_preprocessing=False`); `after`: the caches, images resized, padded and
  normalised in compiled code (`prepare_frames`; the host stacks uint8 frames); with audio (pointnav-audio)
  also `after_no_audio_cache`: `after` with `cache_audio=False` (every audio-history clip's spectrogram
  and latents computed again at every step, as before the audio cache; `audio_cache` sets them side by side);
- `bare_ms`: the jitted model calls the cached policy's step makes, on the step's inputs already
  preprocessed and on the device: the new frames' (clips') latents (`decoding._history_latents`) and
  encode + the same constrained decode (`decoding._generate`) with the kept latents; `bare_frames_ms`:
  the model call with the whole history as frames and clips (what a caller without caches runs);
  `bare_step_ms`: the `after` policy's own compiled step (`act_step`: preprocessing (images, and the
  current audio's log-mel from its raw segment), new latents, encode, decode in one call) on its
  arguments already on the device, so `after_over_bare_step` is the host's share of an act;
- ratios act / bare; `grammar_build_ms`: building the step's grammar the first time a step number is
  seen (VIMA's sentence names the step; PointNav's grammar is one for all steps), outside the act
  timings (as after an eval's first episode);
- `same_decoded_text`: the three policies decoded the same text every step.
Prints JSON.
"""

import argparse
import json
import statistics
import time

import jax
import numpy as np
from flax import nnx

from agent.benchmarking import bench_config, device_name
from agent.envs import resolve_env
from policies.base import TaskSpec
from policies.uio2_policy import UIO2Policy, act_step
from uio2_core import decoding
from uio2_core.decoding import DecodeConfig
from uio2_core.device_preprocessing import prepare_frames
from uio2_core.model import UIO2Model
from uio2_core.vocab import tiny_vocabulary


def _bare_calls(policy: UIO2Policy, obs: list):
    """The model calls of the policy's next step, inputs prepared on the device (not timed): with
    the history as kept latents plus the new items' latents, and with the history as frames (clips)."""
    cfg = policy.model.cfg
    examples = [policy._example(r, o) for r, o in zip(policy.rows, obs, strict=True)]
    new, missing = {}, {}
    for key in policy.kept_histories:
        audio = key == "audio_history"
        histories = [r.history for r in policy.rows]
        new[key] = [
            item
            for h in histories
            for item, kept in zip(h.history_items(audio), h.history_latents(audio), strict=True)
            if kept is None
        ]
        missing[key] = [[x is None for x in h.history_latents(audio)] for h in histories]
    grammar, max_len = policy._grammar()
    dcfg = DecodeConfig(**{**policy.decode_cfg.__dict__, "max_new_tokens": max_len})
    rng = jax.random.key(0)
    fused_args = jax.device_put(policy.step_arguments(examples, dcfg, rng, grammar)[2:7])
    batch = policy.model_inputs(examples)
    batch.update(policy._latent_inputs())
    for key, rows in missing.items():  # the policy's own act computes these
        for row, gaps in zip(policy.rows, rows, strict=True):
            for slot in (s for s, gap in enumerate(gaps) if gap):
                row.history.set_latent(slot, None, key == "audio_history")
    inputs = []  # the new items prepared: (frames or spectrograms, patch masks, audio)
    for key, items in new.items():
        if items:
            n = 1 << (len(items) - 1).bit_length()
            if key == "audio_history":
                clips = policy._host_inputs(key, items + [None] * (n - len(items)))  # padding: silence
                inputs.append((*jax.device_put(clips), True))
            else:
                stack = np.zeros((n, *items[0].shape), np.uint8)
                stack[: len(items)] = items
                inputs.append(
                    (*prepare_frames(stack, cfg.image_history_size, cfg.image_vit.patch_size), False)
                )
    full = {k: v for k, v in batch.items() if "_latents" not in k}
    plain = {k: np.asarray(v) for k, v in policy.builder.collate(examples).items()}
    for key in policy.kept_histories:
        full[key], full[f"{key}_mask"] = plain[key], plain[f"{key}_mask"]
    static, state = decoding._split(policy.model)
    sizes = (cfg.image_input_size, cfg.image_history_size, cfg.image_vit.patch_size)
    weights = decoding.step_weights(policy.model, "text", dcfg.packs(policy.model))  # as the policy's

    def step():
        latents = [decoding._history_latents(static, state, *x) for x in inputs]
        out = decoding._generate(static, state, batch, None, "text", dcfg, rng, grammar, weights)
        return out.tokens, latents

    def whole():
        return decoding._generate(static, state, full, None, "text", dcfg, rng, grammar, weights).tokens

    def fused():
        return act_step(static, state, *fused_args, dcfg, sizes, rng, grammar, weights)[0].tokens

    return step, whole, fused


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
    common = dict(max_frames=max_frames, text_len=128)
    # `after` first: numpy's OpenBLAS threads spin on after the host paths' matrix products and would
    # slow whatever runs right after them on a 2-core CPU
    policies = {"after": UIO2Policy(model, vocab, **common)}
    audio = "audio" in obs[0]
    if audio:
        policies["after_no_audio_cache"] = UIO2Policy(model, vocab, **common, cache_audio=False)
    policies["before"] = UIO2Policy(model, vocab, **common, device_preprocessing=False)
    policies["uncached"] = UIO2Policy(model, vocab, **common, cache_inputs=False, device_preprocessing=False)
    for p in policies.values():
        p.reset_batch(specs)
    times: dict[str, list[float]] = {
        k: [] for k in (*policies, "bare", "bare_frames", "bare_step", "grammar")
    }
    same = True
    try:
        for step in range(max_frames + repeats):  # the first max_frames steps fill the history (compiles)
            # the step's grammar (a new step number: VIMA's sentence names it), built outside the act
            # timings, as after an eval's first episode; its build time is reported on its own
            t_grammar = _timed(lambda: policies["after"]._grammar()[0])
            for p in policies.values():
                p._grammar()
            bare, whole, fused = _bare_calls(policies["after"], obs)
            decoded = []
            for name, policy in policies.items():
                decoding.HOST_CACHING = name != "uncached"
                t = _timed(lambda p=policy: p.act_batch(obs))
                decoded.append([policy.row_info(i).get("decoded_text") for i in range(batch)])
                if step >= max_frames:
                    times[name].append(t)
                if name == "after":  # the device-only timings next to it, before any host numpy work
                    decoding.HOST_CACHING = True
                    t_bare, t_whole, t_fused = _timed(bare), _timed(whole), _timed(fused)
            decoding.HOST_CACHING = True
            same = same and all(d == decoded[0] for d in decoded)
            if step >= max_frames:
                times["bare"].append(t_bare)
                times["bare_frames"].append(t_whole)
                times["bare_step"].append(t_fused)
                times["grammar"].append(t_grammar)
    finally:
        decoding.HOST_CACHING = True
        for env in envs:
            env.close()
    ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
    out = {}
    if audio:
        on, off = ms["after"], ms["after_no_audio_cache"]
        out["audio_cache"] = {"on_act_ms": on, "off_act_ms": off, "off_over_on": off / on}
    return {
        "batch": batch,
        "act_ms": {k: ms[k] for k in policies},
        "bare_ms": ms["bare"],
        "bare_frames_ms": ms["bare_frames"],
        "bare_step_ms": ms["bare_step"],
        "act_over_bare": {k: ms[k] / ms["bare"] for k in policies},
        "after_over_bare_step": ms["after"] / ms["bare_step"],
        "uncached_over_bare_frames": ms["uncached"] / ms["bare_frames"],
        "speedup_after_vs_before": ms["before"] / ms["after"],
        "ms_per_decision_after": ms["after"] / batch,
        "grammar_build_ms": ms["grammar"],
        "same_decoded_text": same,
        "decoded": decoded[-1][0],
        **out,
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
        kwargs = dict(width=128, height=128) if env_name.startswith("pointnav") else {}
        out[env_name] = [
            measure(model, env_name, b, args.repeats, args.max_frames, **kwargs) for b in args.batch
        ]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
