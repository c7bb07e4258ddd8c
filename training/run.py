"""`uio2 train`: recorded datasets -> a trained UIO2 in RUN_DIR (params usable as `--model RUN_DIR`).

RUN_DIR holds `run.json` (data and training settings), `metrics.jsonl`, `eval.jsonl` (periodic
rollout evaluations, when asked for), `checkpoints/` (full training
state, for resuming) and `model.json` + `params/` (the final parameters, uio2_core.checkpoints.ours).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from policies.registry import RUN_TOKENIZER, run_options
from training.data import GROUNDING_SHARE, ExampleBuilder, TrainingData, stack_rows
from training.denoising_sources import denoising_sources
from training.location_metrics import answer_accuracy, location_error
from training.mixture import MixtureData
from training.optimizer import OptimizerConfig
from training.trainer import TrainConfig, Trainer
from uio2_core.checkpoints.ours import is_ours, save_params
from uio2_core.config import CONFIG_NAMES, get_config
from uio2_core.model import UIO2Model, build_model
from uio2_core.vocab import LOCATION_START, NUM_LOCATION_BINS, Vocabulary, tiny_vocabulary
from uio2_errors import MissingFileError, OptionError

TEXT_LEN, MAX_FRAMES = 128, 4  # the example shapes of `uio2 train` (saved in RUN_DIR/model.json)
DTYPES = ("float32", "bfloat16")  # compute dtypes of `uio2 train --dtype` (parameters stay float32)


def _check_settings(steps: int, batch_size: int, learning_rate: float, warmup_steps: int,
                    checkpoint_every: int | None, data: list[str], dtype: str = "float32",
                    pack: tuple[int, int] | None = None) -> None:  # fmt: skip
    """Reject settings that would train nothing or nonsense, before anything is loaded or written."""
    checks = [
        (dtype in DTYPES, f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}"),
        (pack is None or (len(pack) == 2 and min(pack) >= 1),
         f"--pack takes two positive token budgets ENCODER,DECODER, got {pack}"),
        (pack is None or batch_size % 2 == 0, f"--pack pairs examples: --batch-size {batch_size} is odd"),
        (steps >= 1, f"--steps must be >= 1, got {steps}"),
        (batch_size >= 1, f"--batch-size must be >= 1, got {batch_size}"),
        (learning_rate > 0, f"--learning-rate must be > 0, got {learning_rate}"),
        (warmup_steps >= 0, f"--warmup-steps must be >= 0, got {warmup_steps}"),
        ((checkpoint_every or 1) >= 1, f"--eval-every must be >= 1, not {checkpoint_every}"),
        (bool(data), "--data names no dataset directory"),
    ]
    for ok, message in checks:
        if not ok:
            raise OptionError(message)
    for d in data:
        if not Path(d).is_dir():
            raise MissingFileError(f"--data {d}: no such dataset directory (make one with `uio2 collect`)")


def _vocabulary(model: str, tokenizer: str | None) -> Vocabulary:
    """The given tokenizer, else the tiny one for our configs and runs; official weights without
    `--tokenizer` are an error (the tiny one does not match them)."""
    if model not in CONFIG_NAMES and not Path(model).exists():
        raise MissingFileError(f"--model {model}: no such checkpoint (configs: {', '.join(CONFIG_NAMES)})")
    if tokenizer is None:
        if model not in CONFIG_NAMES and not is_ours(model):
            raise OptionError(f"{model} holds official weights: give LLaMA's tokenizer (--tokenizer PATH)")
        return tiny_vocabulary()
    if not Path(tokenizer).is_file():
        raise MissingFileError(f"--tokenizer {tokenizer}: no such file")
    return Vocabulary.load(tokenizer)


def smooth_location_embeddings(net: UIO2Model, seed: int = 0) -> None:
    """Give the 1000 location tokens' (tied) embeddings a shared direction plus sinusoids of their bin
    (periods from 2000 down to about 16 bins), so that neighbouring bins start alike. Randomly
    initialised, every bin is an unrelated vector: a pick learnt at bin 500 says nothing about 503, and
    no step raises "a location" as a group. For models trained from scratch only."""
    emb = net.text_token_embedder.embedding
    d = emb.shape[1]
    rng = np.random.default_rng(seed)
    bins = np.arange(NUM_LOCATION_BINS, dtype=np.float64)
    freqs = np.geomspace(0.5, 64.0, d // 2)  # cycles over the 1000 bins
    phase = 2 * np.pi * bins[:, None] * freqs[None] / NUM_LOCATION_BINS
    waves = np.concatenate([np.sin(phase), np.cos(phase)], axis=1)  # unit-variance-ish per column / sqrt(2)
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    shared = rng.normal(size=d)
    rows = 0.8 * np.sqrt(2.0) * waves @ basis + 0.6 * shared
    ids = location_token_ids()
    emb[...] = emb[...].at[ids].set(rows.astype(emb[...].dtype))


def grid_vit_positions(net: UIO2Model) -> None:
    """Set the image ViT's patch-position rows to 2D sinusoids of the patch's row and column (a
    quarter of the width each for sin/cos of rows and of columns, periods from twice the grid down to
    2 patches), at the scale of a patch's content. At its random init (std width^-0.5) a patch's
    position is about an eighth of its features, and no gradient reaches it unless the ViT trains:
    a decoder that must write where an object is gets little to read it from. For models trained
    from scratch only; the prefix (CLS) row is kept."""
    vit = net.input_embedders.image.vit
    cfg = vit.cfg
    g, width = cfg.pretrain_grid, cfg.width
    k = width // 4
    pos = (np.arange(g, dtype=np.float64) + 0.5) / g  # patch centres in [0, 1]
    freqs = np.geomspace(0.5, g / 2.0, k)  # cycles over the grid
    phase = 2 * np.pi * pos[:, None] * freqs
    waves = np.concatenate([np.sin(phase), np.cos(phase)], axis=1)
    rows = np.concatenate([np.repeat(waves, g, axis=0), np.tile(waves, (g, 1))], axis=1)  # [g*g, 4k]
    table = np.zeros((g * g, width))
    table[:, : 4 * k] = rows
    table = table.astype(np.float32)
    emb = vit.positional_embedding
    emb[...] = emb[...].at[cfg.num_prefix_tokens :].set(table)


def location_token_ids() -> np.ndarray:
    """Token id of each bin 0..999 (bin b <-> id 32999 - b)."""
    return LOCATION_START + NUM_LOCATION_BINS - 1 - np.arange(NUM_LOCATION_BINS)


def heldout_batches(paths: list[str], builder: ExampleBuilder, limit: int = 64, questions: bool = False,
                    ) -> list[dict]:  # fmt: skip
    """The first `limit` steps of each held-out dataset, indexed as training indexes them
    (`TrainingData.example`), in batches of 16; `questions`: its first `limit` grounding questions instead
    (grounded runs; none where the data has none)."""
    batches = []
    for path in paths:
        data = TrainingData([path], builder, 16)
        source = 1 if questions else 0  # a grounded dataset's questions are its second source
        if source >= len(data.indexed):
            continue
        rows = [data.example(source, i) for i in range(min(limit, len(data.steps[source])))]
        batches += [stack_rows(rows[i : i + 16]) for i in range(0, len(rows), 16)]
    return batches


def train(
    data: list[str], model: str, steps: int, out: str | Path, *, batch_size: int = 8, seed: int = 0,
    learning_rate: float = 1e-2, warmup_steps: int = 50, text_len: int = TEXT_LEN,
    max_frames: int = MAX_FRAMES, mesh: tuple[int, int, int] = (-1, 1, 1), progress: bool = True,
    distributed: bool = False,
    tokenizer: str | None = None, evaluate: Callable[[UIO2Model, int], dict] | None = None,
    checkpoint_every: int | None = None, denoise: dict[str, float] | None = None, remat: str = "none",
    dtype: str = "float32", pack: tuple[int, int] | None = None,
    view: str = "front", prompt_crop: bool = False, location_sigma: float = 0.0,
    freeze_vit: bool | None = None, heldout: list[str] | None = None, smooth_locations: bool = False,
    grid_positions: bool = False, max_minutes: float | None = None, ground_objects: bool = False,
    data_weights: list[float] | None = None, logit_share: float | None = None,
    grounding_share: float | None = None, tabletop_first: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Train on `data`; `denoise` ({"image": 0.2, ...}) mixes in mixture-of-denoisers steps made from
    the same datasets (training/denoising_sources.py). `dtype` is the compute dtype (the master
    parameters and the optimiser stay float32); `pack` = (encoder, decoder) token budgets of a row
    holding two examples (training/packing.py). Datasets of different env families (tabletop
    and PointNav) train one model: each row of a batch comes from one dataset, every dataset drawn
    equally often (`TrainingData`). `heldout` (tabletop datasets) reports the location error of pick and
    place at every checkpoint in eval.jsonl (training/location_metrics.py). `freeze_vit` (None: True) keeps
    the image ViT frozen, as UIO2 does; False trains it with the rest (its features are no longer
    cut from the gradient). Every measured run of the demo had it frozen (docs/tabletop_learning.md).
    `ground_objects`: tabletop prompts name their objects by table position, and the model also learns
    the grounding question that finds them (policies/grounding.py). `data_weights`: one per dataset."""
    _check_settings(steps, batch_size, learning_rate, warmup_steps, checkpoint_every, data, dtype, pack)
    if tabletop_first < 0:
        raise OptionError(f"--tabletop-first must be >= 0, got {tabletop_first}")
    if grounding_share is not None and not 0 <= grounding_share < 1:
        raise OptionError(f"--grounding-share must be in [0, 1), got {grounding_share}")
    if logit_share is not None and not 0 < logit_share <= 1:
        raise OptionError(f"--logit-share must be in (0, 1], got {logit_share}")
    if max_minutes is not None and not max_minutes > 0:
        raise OptionError(f"--max-minutes must be > 0, got {max_minutes}")
    if distributed:
        import jax

        # multi-host: every host runs this same command; coordinates come from the cluster's env
        # (JAX_COORDINATOR_ADDRESS / process ids, or TPU/SLURM auto-detection)
        jax.distributed.initialize()
    tokenizer = tokenizer or run_options(model).get("tokenizer")
    vocab = _vocabulary(model, tokenizer)  # before any weights are read
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    denoise = dict(denoise or {})
    tokenized = [m for m in ("image", "audio") if m in denoise]  # these need the (frozen) VQ-GANs
    if model in CONFIG_NAMES:
        net = build_model(get_config(model, dtype=dtype), seed=seed, with_vqgan=bool(tokenized))
        if smooth_locations:
            smooth_location_embeddings(net, seed)
        if grid_positions:
            grid_vit_positions(net)
    else:  # an official HF / T5X checkpoint or one of ours (e.g. a previous run): fine-tune it
        from uio2_core.checkpoints.formats import load_model
        from uio2_core.checkpoints.ours import read_config

        if is_ours(model):
            net = load_model(model, read_config(model).replace(dtype=dtype), with_vqgan=bool(tokenized))
        else:
            net = load_model(model, with_vqgan=bool(tokenized))
            if net.cfg.dtype != dtype:
                raise OptionError(f"--dtype {dtype}: {model} loads as {net.cfg.dtype}; convert it first "
                                  "(`uio2 convert`) and train from the converted run")  # fmt: skip
    vqgans = {}
    for m in tokenized:  # the VQ-GANs make targets on the data side; they are not trained or saved
        embedder = getattr(net.target_embedders, m)
        vqgans[m], embedder.vqgan = embedder.vqgan, None
    cfg = net.cfg
    if location_sigma < 0:
        raise OptionError(f"--location-sigma must be >= 0, got {location_sigma}")
    builder = ExampleBuilder(cfg, vocab, text_len=text_len, max_frames=max_frames, view=view,
                             prompt_crop=prompt_crop, ground_objects=ground_objects)  # fmt: skip
    if data_weights is not None and len(data_weights) != len(data):
        raise OptionError(f"--data-weights gives {len(data_weights)} weights for {len(data)} datasets")
    dataset = TrainingData(data, builder, batch_size, seed=seed, weights=data_weights,
                           grounding_share=GROUNDING_SHARE if grounding_share is None else grounding_share,
                           tabletop_first=tabletop_first)  # fmt: skip
    batch_at = dataset.batch_at
    if denoise:
        sources = denoising_sources(denoise, dataset.datasets, cfg, vocab, vqgans, batch_size=batch_size,
                                    seed=seed)  # fmt: skip
        mixture = MixtureData([dataset.batch_at, *(fn for fn, _ in sources)],
                              [1.0 - sum(denoise.values()), *(w for _, w in sources)], seed=seed)  # fmt: skip
        batch_at = mixture.batch_at
    if freeze_vit is None:
        freeze_vit = True
    if not freeze_vit:  # let gradients reach the image ViT (UIO2 stops them at its features)
        net.input_embedders.image.train_vit = True
        net.input_embedders.image_history.train_vit = True
    opt = OptimizerConfig(learning_rate=learning_rate, warmup_steps=warmup_steps, freeze_vit=freeze_vit)
    every = checkpoint_every or max(steps // 4, 1)
    tcfg = TrainConfig(steps=steps, seed=seed, mesh=mesh, checkpoint_every=every, optimizer=opt, remat=remat,
                       pack=pack, location_sigma=location_sigma, logit_share=logit_share,
                       max_seconds=None if max_minutes is None else max_minutes * 60)  # fmt: skip
    settings = {**asdict(tcfg), "batch_size": batch_size, "text_len": text_len, "max_frames": max_frames,
                "denoise": denoise, "dtype": dtype, "view": view, "prompt_crop": prompt_crop,
                "heldout": heldout, "smooth_locations": smooth_locations,
                "grid_positions": grid_positions, "ground_objects": ground_objects,
                "tabletop_first": tabletop_first,
                "sources": dict(zip(dataset.paths, dataset.weights.tolist(), strict=True))}  # fmt: skip
    settings["prompts_over_text_len"] = dataset.text_report()  # cut the same way at evaluation
    meta = {"model": model, "data": data, "train": settings}
    (out / "run.json").write_text(json.dumps(meta, indent=2, default=str))
    trainer = Trainer(net, tcfg, out)
    on_checkpoint = None
    held = {path: heldout_batches([path], builder) for path in heldout or []}
    asked = {path: heldout_batches([path], builder, 128, questions=True) for path in heldout or []
             if ground_objects}  # fmt: skip
    if evaluate is not None or held:

        def on_checkpoint(t: Trainer) -> None:
            result: dict[str, Any] = {"step": t.step_count}
            if held:
                model = t.merged_model()
                if asked:  # held-out grounding questions answered right (chance 0.5)
                    result["grounding_accuracy_per_dataset"] = {p: answer_accuracy(model, q)
                                                                for p, q in asked.items() if q}  # fmt: skip
                result["location_per_dataset"] = {p: location_error(model, b) for p, b in held.items()}
            if evaluate is not None:
                result.update(evaluate(t.merged_model(), t.step_count))
            with (out / "eval.jsonl").open("a") as f:
                f.write(json.dumps(result) + "\n")

    history = trainer.fit(batch_at, progress=progress, on_checkpoint=on_checkpoint)
    # every option that shapes the inputs, so that `--model RUN_DIR` restores them (policies/registry.py)
    saved = {"text_len": text_len, "max_frames": max_frames, "view": builder.view,
             "template": builder.template, "prompt_crop": prompt_crop,
             "ground_objects": ground_objects}  # fmt: skip
    if tokenizer is not None and Path(tokenizer).resolve() != (out / RUN_TOKENIZER).resolve():
        shutil.copyfile(tokenizer, out / RUN_TOKENIZER)
    save_params(trainer.merged_model(), out, saved)
    last = history[-1] if history else {}
    return {"steps": trainer.step_count, "budget_spent": trainer.step_count < steps,
            "final_loss": last.get("loss"), "dataset_steps": dataset.num_steps,
            "run_dir": str(out)}  # fmt: skip
