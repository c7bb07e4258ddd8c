"""`uio2 showcase`: the whole tiny UIO2 end to end on one synthetic observation (no env, no training).

On a synthetic tabletop observation: preprocessing of an image, two prompt images (image history)
and a sound, one encoder pass, then cached decoding three ways (free text, an action sentence under
a constrained grammar, beam search) and image tokens with classifier-free guidance. The weights are
random, so the words are not meaningful; the shapes, the grammar and the timings are.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agent.model_info import format_info, model_info
from uio2_core.config import UIO2Config, get_config
from uio2_core.constraints import TokenDFA
from uio2_core.decoding import DecodeConfig, generate
from uio2_core.model import build_model
from uio2_core.preprocessing import preprocess_audio_input, preprocess_history_frames, preprocess_image_input
from uio2_core.vocab import (
    LOCATION_START,
    NUM_LOCATION_BINS,
    PREFIXES,
    is_location_token,
    location_token_to_value,
    tiny_vocabulary,
)

ACTION_TEMPLATE = "1: pick from ( {l} {l} {l} ) and place to ( {l} {l} {l} )".replace("{l}", "<extra_id_200>")
PROMPT = "Put the <image_history_1> into the <image_history_2>. Predict the next action."


def synthetic_scene(seed: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """A 128x256 tabletop-like RGB frame with two blocks, their two crops, and a 1 s chirp at 16 kHz."""
    rng = np.random.default_rng(seed)
    frame = np.full((128, 256, 3), (150, 120, 90), np.uint8)
    crops = []
    for colour in ((200, 30, 30), (30, 30, 200)):
        y, x = rng.integers(10, 90), rng.integers(10, 210)
        frame[y : y + 28, x : x + 36] = colour
        crops.append(frame[max(0, y - 8) : y + 36, max(0, x - 8) : x + 44].copy())
    t = np.arange(16000) / 16000
    chirp = (0.3 * np.sin(2 * np.pi * (300 + 900 * t) * t)).astype(np.float32)
    return frame, crops, chirp


def build_inputs(cfg: UIO2Config, token_ids: list[int], seed: int) -> dict[str, jax.Array]:
    frame, crops, chirp = synthetic_scene(seed)
    image = preprocess_image_input(frame, cfg.image_input_size)
    hist = preprocess_history_frames(crops, cfg.image_history_size, max_frames=cfg.image_history.max_frames)
    segment = np.zeros(65280, np.float32)
    segment[: chirp.size] = chirp
    audio = preprocess_audio_input(segment)
    return {
        "text": jnp.asarray([token_ids], jnp.int32),
        "image": jnp.asarray(image.image[None]),
        "image_mask": jnp.asarray(image.mask.reshape(1, -1)),
        "image_history": jnp.asarray(hist.images[None]),
        "image_history_mask": jnp.asarray(hist.masks.reshape(1, len(crops), -1)),
        "audio": jnp.asarray(audio.spectrogram[None]),
        "audio_mask": jnp.asarray(audio.mask.reshape(1, -1)),
    }


def action_grammar(template_ids: list[int]) -> TokenDFA:
    """Literal tokens stay fixed; every location token slot accepts any of the 1000 bins."""
    bins = range(LOCATION_START, LOCATION_START + NUM_LOCATION_BINS)
    slots = [bins if is_location_token(t) else t for t in template_ids]
    return TokenDFA.from_slots(slots, 33280)


def _timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def run_showcase(out_dir: str | Path, seed: int = 0) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = model_info("tiny")
    print(format_info(info), flush=True)
    cfg = get_config("tiny")
    vocab = tiny_vocabulary()
    model = build_model(cfg, seed=seed)
    prompt_ids = vocab.encode(PREFIXES["text"] + PROMPT, add_eos=True)
    batch = build_inputs(cfg, prompt_ids, seed)

    free_cfg = DecodeConfig(max_new_tokens=16)
    real_pieces = TokenDFA.from_allowed([*range(1, vocab.sp_size), *range(LOCATION_START, 33225)], 33280)
    generate(model, batch, "text", free_cfg, constraint=real_pieces)  # compile
    free, free_s = _timed(lambda: generate(model, batch, "text", free_cfg, constraint=real_pieces))

    template = vocab.encode(ACTION_TEMPLATE)
    grammar = action_grammar(template)
    act_cfg = DecodeConfig(max_new_tokens=len(template) + 1)
    action, _ = _timed(lambda: generate(model, batch, "text", act_cfg, constraint=grammar))
    beam, _ = _timed(
        lambda: generate(
            model, batch, "text", DecodeConfig(len(template) + 1, method="beam"), constraint=grammar
        )
    )
    locs = [t for t in np.asarray(action.tokens[0]) if is_location_token(int(t))]
    values = [float(location_token_to_value(int(t))) for t in locs]

    negative = build_inputs(
        cfg, vocab.encode(PREFIXES["image"] + "An image of a random picture.", add_eos=True), seed
    )
    image_cfg = DecodeConfig(cfg.decoder_max_image_length, method="sample", top_p=0.9, guidance_scale=3.0,
                             stop_at_eos=False)  # fmt: skip
    image_batch = dict(batch, text=jnp.asarray([vocab.encode(PREFIXES["image"] + PROMPT, add_eos=True)]))
    make_image = lambda: generate(  # noqa: E731
        model, image_batch, "image", image_cfg, rng=jax.random.key(seed), negative_batch=negative
    )
    _, compile_s = _timed(make_image)  # the first call compiles; the figure below is the second
    img, img_s = _timed(make_image)
    rgb = model.target_embedders.image.vqgan.ids_to_rgb(img.tokens - 2)
    np.save(out / "generated_image.npy", np.asarray(rgb[0]))

    summary = {
        "model": "tiny",
        "params": info["params"],
        "weights": f"random (seed {seed}); official ones: `uio2 convert` or --model DIR (README)",
        "prompt": vocab.decode(prompt_ids),
        "free_text": {
            "tokens": np.asarray(free.tokens[0]).tolist(),
            "text": vocab.decode(free.tokens[0].tolist()),
        },
        "action": {
            "text": vocab.decode(action.tokens[0].tolist()),
            "parses": len(values) == 6,
            "pick": {"x": values[0], "y": values[1], "rotation": values[2]} if len(values) == 6 else None,
            "place": {"x": values[3], "y": values[4], "rotation": values[5]} if len(values) == 6 else None,
            "beam_text": vocab.decode(beam.tokens[0].tolist()),
            "greedy_log_prob": float(action.log_prob[0]),
            "beam_log_prob": float(beam.log_prob[0]),
        },
        "image": {
            "tokens": int(img.tokens.shape[1]),
            "rgb_shape": list(rgb.shape[1:]),
            "file": "generated_image.npy",
        },
        "timings": {  # after a warm-up call each (compilation excluded)
            "text_ms_per_token": 1000 * free_s / free_cfg.max_new_tokens,
            "image_ms_per_token_with_guidance": 1000 * img_s / image_cfg.max_new_tokens,
            "image_first_call_s_with_compilation": compile_s,
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
