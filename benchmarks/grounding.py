"""Can a UIO2 trained from scratch tell which scene object a VIMA prompt image shows? (issue 22; not CI)

    python benchmarks/grounding.py                     # 2000 episodes, 600 steps, tiny: a few minutes
    python benchmarks/grounding.py --episodes 64 --steps 4 --heldout 16    # seconds

docs/tabletop_learning.md found that tiny UIO2 learns to copy a listed object's position in ~300 steps
but not, in 1500, to find which listed object a prompt image shows. This measures the matching alone, in
two fixed history slots: slot 1 the prompt's dragged-object image, slot 2 one scene object's crop on
white (`policies.scene_objects`), text `Is <image_history_2> the same object as <image_history_1>?`,
answer `yes` / `no` (the dragged object's own crop, found from the oracle's pick, and one other object
per episode: half are yes). Prints JSON: held-out accuracy of the first answer token at every checkpoint
(chance 0.5), seconds per step, and the data sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUESTION = "Is <image_history_2> the same object as <image_history_1>?"


def pairs(task: str, seeds: range, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """(prompt image, scene crop, same?) pairs: per episode the dragged object's crop and one other's."""
    from envs.tabletop import make_tabletop
    from policies.prompting import chw_to_hwc, vima_prompt_images
    from policies.scene_objects import scene_objects

    env = make_tabletop(task)
    out = []
    try:
        for seed in seeds:
            obs, info = env.reset(seed=seed)
            pick = env.unwrapped.make_oracle(seed).act(obs, info)["pose0_position"]
            _, images = vima_prompt_images(info["prompt"], info["prompt_assets"], "top", crop=True)
            objects = scene_objects(chw_to_hwc(obs["rgb"]["top"]), obs["segm"]["top"],
                                    info["meta_info"]["robot_components"])  # fmt: skip
            if len(objects) < 2:
                continue
            near = int(np.argmin([np.hypot(o.x - pick[0], o.y - pick[1]) for o in objects]))
            other = int(rng.choice([j for j in range(len(objects)) if j != near]))
            out += [(images[0], objects[near].crop, True), (images[0], objects[other].crop, False)]
    finally:
        env.close()
    return out


def arrays(rows: list[tuple[np.ndarray, np.ndarray, bool]], builder: Any, vocab: Any,
           ) -> dict[str, np.ndarray]:  # fmt: skip
    from policies.prompting import Example
    from uio2_core.vocab import EOS_ID, PREFIXES

    answers = {True: [*vocab.encode("yes"), EOS_ID], False: [*vocab.encode("no"), EOS_ID]}
    blank = np.full((8, 8, 3), 255, np.uint8)  # the main image carries nothing here
    built = [builder.arrays(Example(PREFIXES["text"] + QUESTION, blank, [a, b])) for a, b, _ in rows]
    out = {k: np.stack([r[k] for r in built]) for k in built[0]}
    targets = [np.pad(answers[same], (0, 8 - len(answers[same]))) for *_, same in rows]
    out["targets/text"] = np.stack(targets).astype(np.int32)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="visual_manipulation")
    p.add_argument("--episodes", type=int, default=2000, help="training episodes (two pairs each)")
    p.add_argument("--heldout", type=int, default=64, help="held-out episodes (seeds from 100000)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=1e-2)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--model", default="tiny")
    args = p.parse_args(argv)

    import jax.numpy as jnp
    from flax import nnx

    from policies.prompting import InputBuilder
    from training.optimizer import OptimizerConfig
    from training.run import _vocabulary
    from training.trainer import TrainConfig, Trainer, split_batch
    from uio2_core.config import get_config
    from uio2_core.model import build_model

    cfg, vocab = get_config(args.model), _vocabulary(args.model, None)
    builder = InputBuilder(cfg, vocab, text_len=32, max_frames=2)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    train = arrays(pairs(args.task, range(args.episodes), rng), builder, vocab)
    held = arrays(pairs(args.task, range(100000, 100000 + args.heldout), rng), builder, vocab)
    data_s = time.perf_counter() - started
    n = len(train["text"])

    def batch_at(position: int) -> dict[str, np.ndarray]:
        rows = np.random.default_rng([0, position]).integers(n, size=args.batch_size)
        return {k: v[rows] for k, v in train.items()}

    @nnx.jit
    def first_answer(model: Any, batch: dict) -> Any:
        inputs, targets, masks, _ = split_batch(batch)
        logits = model.decode(model.encode_sequence(model.embed_inputs(inputs)), targets, masks)["text"]
        return jnp.argmax(logits[:, 0], axis=-1)

    curve: list[dict[str, float]] = []

    def evaluate(t: Trainer) -> None:
        model, hits = t.merged_model(), []
        for i in range(0, len(held["text"]), args.batch_size):
            batch = {k: v[i : i + args.batch_size] for k, v in held.items()}
            hits.append(np.asarray(first_answer(model, batch)) == batch["targets/text"][:, 0])
        curve.append({"step": t.step_count, "heldout_accuracy": float(np.concatenate(hits).mean())})

    opt = OptimizerConfig(learning_rate=args.learning_rate, warmup_steps=min(50, args.steps), freeze_vit=True)
    tcfg = TrainConfig(steps=args.steps, checkpoint_every=args.eval_every, optimizer=opt)
    trainer = Trainer(build_model(cfg, seed=0, with_vqgan=False), tcfg)
    history = trainer.fit(batch_at, progress=False, on_checkpoint=evaluate)
    result = {
        "benchmark": "grounding", "task": args.task, "model": args.model, "train_pairs": n,
        "heldout_pairs": len(held["text"]), "steps": args.steps, "batch_size": args.batch_size,
        "data_seconds": round(data_s, 1),
        "seconds_per_step": float(np.median([m["seconds"] for m in history])) if history else None,
        "curve": curve, "chance": 0.5,
    }  # fmt: skip
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
