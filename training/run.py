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

from policies.registry import RUN_TOKENIZER, run_options
from training.data import ExampleBuilder, TrainingData
from training.denoising_sources import denoising_sources
from training.mixture import MixtureData
from training.optimizer import OptimizerConfig
from training.trainer import TrainConfig, Trainer
from uio2_core.checkpoints.ours import is_ours, save_params
from uio2_core.config import CONFIG_NAMES, get_config
from uio2_core.model import UIO2Model, build_model
from uio2_core.vocab import Vocabulary, tiny_vocabulary
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


def train(
    data: list[str], model: str, steps: int, out: str | Path, *, batch_size: int = 8, seed: int = 0,
    learning_rate: float = 1e-2, warmup_steps: int = 50, text_len: int = TEXT_LEN,
    max_frames: int = MAX_FRAMES, mesh: tuple[int, int, int] = (-1, 1, 1), progress: bool = True,
    distributed: bool = False,
    tokenizer: str | None = None, evaluate: Callable[[UIO2Model, int], dict] | None = None,
    checkpoint_every: int | None = None, denoise: dict[str, float] | None = None, remat: str = "none",
    dtype: str = "float32", pack: tuple[int, int] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train on `data`; `denoise` ({"image": 0.2, ...}) mixes in mixture-of-denoisers steps made from
    the same datasets (training/denoising_sources.py). `dtype` is the compute dtype (the master
    parameters and the optimiser stay float32); `pack` = (encoder, decoder) token budgets of a row
    holding two examples (training/packing.py)."""
    _check_settings(steps, batch_size, learning_rate, warmup_steps, checkpoint_every, data, dtype, pack)
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
    builder = ExampleBuilder(cfg, vocab, text_len=text_len, max_frames=max_frames)
    dataset = TrainingData(data, builder, batch_size, seed=seed)
    batch_at = dataset.batch_at
    if denoise:
        sources = denoising_sources(denoise, dataset.datasets, cfg, vocab, vqgans, batch_size=batch_size,
                                    seed=seed)  # fmt: skip
        mixture = MixtureData([dataset.batch_at, *(fn for fn, _ in sources)],
                              [1.0 - sum(denoise.values()), *(w for _, w in sources)], seed=seed)  # fmt: skip
        batch_at = mixture.batch_at
    opt = OptimizerConfig(learning_rate=learning_rate, warmup_steps=warmup_steps)
    every = checkpoint_every or max(steps // 4, 1)
    tcfg = TrainConfig(steps=steps, seed=seed, mesh=mesh, checkpoint_every=every, optimizer=opt, remat=remat,
                       pack=pack)  # fmt: skip
    settings = {**asdict(tcfg), "batch_size": batch_size, "text_len": text_len, "max_frames": max_frames,
                "denoise": denoise, "dtype": dtype}  # fmt: skip
    settings["prompts_over_text_len"] = dataset.text_report()  # cut the same way at evaluation
    meta = {"model": model, "data": data, "train": settings}
    (out / "run.json").write_text(json.dumps(meta, indent=2, default=str))
    trainer = Trainer(net, tcfg, out)
    on_checkpoint = None
    if evaluate is not None:

        def on_checkpoint(t: Trainer) -> None:
            result = {"step": t.step_count, **evaluate(t.merged_model(), t.step_count)}
            with (out / "eval.jsonl").open("a") as f:
                f.write(json.dumps(result) + "\n")

    history = trainer.fit(batch_at, progress=progress, on_checkpoint=on_checkpoint)
    # every option that shapes the inputs, so that `--model RUN_DIR` restores them (policies/registry.py)
    saved = {"text_len": text_len, "max_frames": max_frames, "view": builder.view,
             "template": builder.template}  # fmt: skip
    if tokenizer is not None and Path(tokenizer).resolve() != (out / RUN_TOKENIZER).resolve():
        shutil.copyfile(tokenizer, out / RUN_TOKENIZER)
    save_params(trainer.merged_model(), out, saved)
    last = history[-1] if history else {}
    return {"steps": trainer.step_count, "final_loss": last.get("loss"), "dataset_steps": dataset.num_steps,
            "run_dir": str(out)}  # fmt: skip
