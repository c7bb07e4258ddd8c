"""The sharded trainer: jit-compiled steps over a device mesh, orbax checkpoints, JSON-lines metrics.

Data comes from a deterministic `batch_at(position) -> batch` function, so the data position is
just a number saved with the checkpoint: after a crash (even `kill -9`) `fit` resumes from the
newest complete checkpoint and, on CPU, reproduces the same losses bit for bit.

A batch holds the model inputs (see uio2_core/batch.py) plus `targets/<modality>` token ids and,
optionally, `targets/<modality>_mask` and `segments/<modality>` (packed rows: see packing.py) and
`segments/inputs`.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from training.objective import Z_LOSS, kept_positions, uio2_loss
from training.optimizer import OptimizerConfig, make_optimizer
from training.packing import pack_inputs_counted, pack_targets
from training.sharding import batch_sharding, make_mesh, opt_state_shardings, param_shardings, shard_batch
from uio2_core.batch import MASK_KEYS, MODALITY_KEYS
from uio2_core.model import TARGET_MODALITIES, UIO2Model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 100
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    z_loss: float = Z_LOSS
    location_sigma: float = 0.0  # > 0: Gaussian location targets over neighbour bins (training/objective.py)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    mesh: tuple[int, int, int] = (-1, 1, 1)  # (data, fsdp, model); -1 = all remaining devices
    # (encoder, decoder) token budgets: pack two examples per row (training/packing.py); the data side
    # must pair examples so that both fit (tokens beyond a budget would be cut).
    pack: tuple[int, int] | None = None
    # activation checkpointing: "none" keeps every layer's activations for the backward pass,
    # "layer" keeps only each transformer layer's input and recomputes the rest (uio2_core/transformer.py)
    remat: str = "none"
    # False: the optimiser state whole on every device (the old layout; `uio2 plan` compares the two)
    shard_opt_state: bool = True
    # True: each transformer layer's input and output keep their rows split over (data, fsdp), as the
    # batch is, so XLA's partitioner gathers the fsdp-split weights instead. False (default): the
    # partitioner chooses; meeting weights split over fsdp on their input dimension it often keeps a
    # layer's activations whole (every row of the global batch) on every device and moves those
    # instead, so per-device activations grow with the device count. Which costs less memory depends
    # on the model and mesh (docs/training.md: `uio2 plan --pin-rows` compares).
    pin_rows: bool = False
    # batches built (and put on the devices) ahead of the step by a background thread; 0 builds each
    # batch in the loop. Either way the losses are the same: batch k is always batch_at(k).
    prefetch: int = 2
    # wall-clock budget of one `fit` in seconds (None: none): checked where the step's metrics are read
    # (every `log_every` steps), it ends training there with a checkpoint, as if `steps` were reached
    max_seconds: float | None = None
    # output logits only for this share of the target positions, the valid ones first (None: all).
    # The vocabulary projection of every padded position was half a tiny model's step; valid tokens
    # beyond the share are not trained on and counted in the metric `logit_cut_tokens`.
    logit_share: float | None = None


REMAT_MODES = ("none", "layer")


def split_batch(batch: dict[str, Any]) -> tuple[dict, dict, dict, dict]:
    """(model inputs, targets, target masks, segment ids) of a training batch."""
    inputs = {k: v for k, v in batch.items() if k in MODALITY_KEYS or k in MASK_KEYS}
    targets = {m: batch[f"targets/{m}"] for m in TARGET_MODALITIES if f"targets/{m}" in batch}
    if not targets:
        raise ValueError(f"batch has no targets; expected keys like 'targets/text', got {sorted(batch)}")
    masks = {}
    for m, t in targets.items():
        default = t != 0 if m == "text" else jnp.ones_like(t, bool)
        masks[m] = batch.get(f"targets/{m}_mask", default)
    segments = {m: batch[f"segments/{m}"] for m in targets if f"segments/{m}" in batch}
    return inputs, targets, masks, segments


class Trainer:
    def __init__(
        self, model: UIO2Model, cfg: TrainConfig, out_dir: str | Path | None = None, devices=None
    ):  # fmt: skip
        """`model` may be abstract (nnx.eval_shape): then the state is abstract too (sharded
        jax.ShapeDtypeStructs) and the step can only be lowered and compiled (`compile`), never run."""
        if cfg.remat not in REMAT_MODES:
            raise ValueError(f"remat must be one of {REMAT_MODES}, got {cfg.remat!r}")
        self.cfg = cfg
        self.mesh = make_mesh(*cfg.mesh, devices=devices)
        model.encoder.remat = model.decoder.remat = cfg.remat == "layer"
        # rows stay split over (data, fsdp) from layer to layer (uio2_core.transformer._run_layer)
        model.encoder.rows = model.decoder.rows = batch_sharding(self.mesh) if cfg.pin_rows else None
        self.graphdef, params, self.rest = nnx.split(model, nnx.Param, ...)
        self._template = params
        pure = nnx.to_pure_dict(params)
        self.abstract = any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(pure))
        self.param_shardings = param_shardings(pure, self.mesh)
        self.tx = make_optimizer(cfg.optimizer, pure)
        abstract_opt = jax.eval_shape(self.tx.init, pure)
        replicated = NamedSharding(self.mesh, PartitionSpec())
        # Pin every leaf's sharding, in and out: otherwise the first step's outputs come back laid out
        # differently from the initial state and the second step compiles all over again. The
        # optimiser state follows its parameter's sharding, so it shrinks with the mesh too.
        self.state_shardings = {
            "params": self.param_shardings,
            "opt_state": opt_state_shardings(abstract_opt, pure, self.param_shardings, self.mesh)
            if cfg.shard_opt_state
            else jax.tree.map(lambda _: replicated, abstract_opt),
            "step": replicated,
            "rng": replicated,
        }
        step, rng = jnp.zeros((), jnp.int32), jax.random.key_data(jax.random.key(cfg.seed))
        if self.abstract:
            state = {"params": pure, "opt_state": abstract_opt, "step": step, "rng": rng}
            self.state: dict[str, Any] = jax.tree.map(
                lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, self.state_shardings
            )
        else:
            # fresh buffers, laid out by shard, even where the layout matches (device_put would reuse
            # them): the step donates its state, and the caller's model must keep its arrays
            pure = jax.jit(lambda p: jax.tree.map(jnp.copy, p), out_shardings=self.param_shardings)(pure)
            opt_state = jax.jit(self.tx.init, out_shardings=self.state_shardings["opt_state"])(pure)
            self.state = jax.device_put(
                {"params": pure, "opt_state": opt_state, "step": step, "rng": rng}, self.state_shardings
            )
        self._step_fn = jax.jit(
            self._train_step, donate_argnums=(0,), out_shardings=(self.state_shardings, replicated)
        )
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.manager = None
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            options = ocp.CheckpointManagerOptions(max_to_keep=cfg.keep_checkpoints, create=True)
            self.manager = ocp.CheckpointManager((self.out_dir / "checkpoints").absolute(), options=options)

    # ---- the step ------------------------------------------------------------------------
    def merged_model(self, params: dict | None = None) -> UIO2Model:
        state = jax.tree.map(lambda x: x, self._template)
        nnx.replace_by_pure_dict(state, params if params is not None else self.state["params"])
        return nnx.merge(self.graphdef, state, self.rest)

    def _loss(self, params: dict, batch: dict) -> tuple[jax.Array, dict]:
        inputs, targets, masks, segments = split_batch(batch)
        model = self.merged_model(params)
        cut = None
        if self.cfg.pack is not None:
            enc, cut = pack_inputs_counted(model, inputs, self.cfg.pack[0])
            valid = sum(jnp.sum(m.astype(jnp.int32)) for m in masks.values())
            targets, masks, segments = pack_targets(targets, masks, self.cfg.pack[1])
            cut += valid - sum(jnp.sum(m.astype(jnp.int32)) for m in masks.values())
        else:
            enc = model.encode_sequence(model.embed_inputs(inputs), batch.get("segments/inputs"))
        kept = None
        if self.cfg.logit_share is not None:
            kept = {m: kept_positions(masks[m], self.cfg.logit_share) for m in targets}
        logits = model.decode(enc, targets, masks, segments or None,
                              None if kept is None else {m: k[0] for m, k in kept.items()})  # fmt: skip
        if kept is not None:  # the targets of the positions given logits, as [1, K]
            targets = {m: t.reshape(-1)[kept[m][0]][None] for m, t in targets.items()}
            masks = {m: kept[m][1][None] for m in masks}
        loss, metrics = uio2_loss(logits, targets, masks, self.cfg.z_loss, self.cfg.location_sigma)
        if kept is not None:
            metrics["logit_cut_tokens"] = sum(k[2] for k in kept.values()).astype(jnp.float32)
        if cut is not None:  # valid tokens over the packing budgets: they were not trained on
            metrics["pack_cut_tokens"] = cut.astype(jnp.float32)
        return loss, metrics

    def _train_step(self, state: dict, batch: dict) -> tuple[dict, dict]:
        (_, metrics), grads = jax.value_and_grad(self._loss, has_aux=True)(state["params"], batch)
        updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
        params = jax.tree.map(lambda p, u: p + u.astype(p.dtype), state["params"], updates)
        params = jax.lax.with_sharding_constraint(params, self.param_shardings)
        metrics["grad_norm"] = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
        new = {"params": params, "opt_state": opt_state, "step": state["step"] + 1, "rng": state["rng"]}
        return new, metrics

    def compile(self, batch: dict):
        """Lower and compile the step for `batch` (arrays or jax.ShapeDtypeStructs): jax's Compiled,
        whose memory_analysis() is XLA's per-device account (training/plan.py)."""
        sharding = batch_sharding(self.mesh)
        abstract = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding) for k, v in batch.items()}
        return self._step_fn.lower(self.state, abstract).compile()

    def put(self, batch: dict) -> dict:
        """A host batch on the devices, split along the mesh's data axes."""
        return shard_batch({k: np.asarray(v) for k, v in batch.items()}, self.mesh)

    def _dispatch(self, batch: dict) -> dict[str, jax.Array]:
        """Queue one step on the devices; the metrics stay there (reading them waits for the step)."""
        if self.abstract:
            raise RuntimeError("this trainer holds abstract state (an nnx.eval_shape model): compile only")
        self.state, metrics = self._step_fn(self.state, batch)
        return metrics

    def step(self, batch: dict) -> dict[str, float]:
        """One step, waited for (fit instead overlaps data, steps and metric reads)."""
        return {k: float(v) for k, v in self._dispatch(self.put(batch)).items()}

    # ---- checkpoints ---------------------------------------------------------------------
    @property
    def step_count(self) -> int:
        return int(self.state["step"])

    def save(self) -> None:
        if self.manager is None:
            return
        self.manager.save(self.step_count, args=ocp.args.StandardSave(self.state))
        self.manager.wait_until_finished()

    def restore_latest(self) -> bool:
        """Load the newest intact checkpoint, if any. Incomplete ones are never listed by orbax; a
        listed one that fails to read (truncated or corrupt files) is moved to `damaged_checkpoints/`
        with a warning naming it, and the next older one is tried."""
        if self.manager is None:
            return False
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, self.state)
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                self.state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
                return True
            except Exception as err:  # orbax / tensorstore raise bare Exceptions for damaged data
                self._set_aside(step, err)
        return False

    def _set_aside(self, step: int, err: Exception) -> None:
        """Move a damaged checkpoint out of orbax's listing (its step will be saved again)."""
        assert self.out_dir is not None and self.manager is not None
        bad = self.out_dir / "checkpoints" / str(step)
        aside = self.out_dir / "damaged_checkpoints" / f"{step}-{time.strftime('%Y%m%dT%H%M%S')}"
        aside.parent.mkdir(exist_ok=True)
        bad.rename(aside)
        self.manager.reload()
        log.warning(
            "checkpoint %s is damaged (%s); moved to %s, resuming from an older one",
            bad, str(err).split(". See full", 1)[0][:200], aside,
        )

    def _truncate_metrics(self) -> None:
        """Keep the metrics (and periodic evaluations) of steps up to the resumed one: the replayed
        steps are written again, and each step must appear once."""
        for name in ("metrics.jsonl", "eval.jsonl"):
            path = self.out_dir / name if self.out_dir else None
            if path is None or not path.exists():
                continue
            kept = []
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= self.step_count:
                        kept.append(line + "\n")
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by the crash
            tmp = path.with_name(name + ".tmp")
            tmp.write_text("".join(kept))
            tmp.replace(path)

    # ---- the loop ------------------------------------------------------------------------
    def fit(
        self,
        batch_at: Callable[[int], dict],
        *,
        resume: bool = True,
        progress: bool = True,
        on_checkpoint: Callable[[Trainer], None] | None = None,
    ) -> list[dict]:
        """Train to `cfg.steps`; batch k is `batch_at(k)`. Appends metrics to OUT/metrics.jsonl and
        calls `on_checkpoint(self)` after every checkpoint (e.g. an evaluation by rollouts).

        The devices are never waited for inside the interval: batches come from a background thread
        (`cfg.prefetch` ahead) and each step's metrics are read every `cfg.log_every` steps and at
        checkpoints (one line a step all the same; `seconds` is the interval's mean a step)."""
        from tqdm import tqdm

        if resume and self.restore_latest():
            log.info("resumed from step %d", self.step_count)
        self._truncate_metrics()
        history: list[dict] = []
        metrics_file = (self.out_dir / "metrics.jsonl").open("a") if self.out_dir else None
        position = self.step_count  # kept on the host: reading state["step"] would wait for each step
        batches = _Batches(batch_at, self.put, position, self.cfg.steps, self.cfg.prefetch)
        pending: list[tuple[int, dict]] = []  # (step, metrics still on the devices)
        warned: list[int] = []  # the step whose packing cut tokens was reported (once per fit)
        since = started = time.perf_counter()

        def flush(bar: Any) -> None:
            """Read the pending steps' metrics (one wait), check them, log them."""
            nonlocal since
            if not pending:
                return
            values = jax.device_get([m for _, m in pending])
            now = time.perf_counter()
            seconds = (now - since) / len(pending)  # the interval's mean: steps overlap, none ends alone
            since = now
            for (step, _), m in zip(pending, values, strict=True):
                metrics = {k: float(v) for k, v in m.items()}
                metrics.update(step=step, seconds=seconds)
                if not np.isfinite(metrics["loss"]):
                    raise FloatingPointError(f"loss became {metrics['loss']} at step {step}")
                if metrics.get("pack_cut_tokens", 0) > 0 and not warned:
                    warned.append(step)
                    log.warning("step %d: %d valid tokens did not fit the packing budgets %s and were cut "
                                "(metrics.jsonl: pack_cut_tokens)", step, metrics["pack_cut_tokens"],
                                self.cfg.pack)  # fmt: skip
                history.append(metrics)
                if metrics_file is not None:
                    metrics_file.write(json.dumps(metrics) + "\n")
            if metrics_file is not None:
                metrics_file.flush()
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
            pending.clear()

        try:
            with tqdm(total=self.cfg.steps, initial=position, desc="train", disable=not progress) as bar:
                spent = False
                while position < self.cfg.steps and not spent:
                    pending.append((position + 1, self._dispatch(batches.get(position))))
                    position += 1
                    bar.update(1)
                    checkpoint = position % self.cfg.checkpoint_every == 0 or position == self.cfg.steps
                    if checkpoint or position % max(self.cfg.log_every, 1) == 0:
                        flush(bar)  # before a checkpoint too: a non-finite loss is never saved
                        budget = self.cfg.max_seconds
                        spent = budget is not None and time.perf_counter() - started >= budget
                        if spent and not checkpoint:
                            log.info("time budget of %.0f s spent at step %d of %d", budget, position,
                                     self.cfg.steps)  # fmt: skip
                            checkpoint = True
                    if checkpoint:
                        self.save()
                        if on_checkpoint is not None:
                            on_checkpoint(self)
        finally:
            batches.close()
            if metrics_file is not None:
                metrics_file.close()
        return history


class _Batches:
    """Batches `batch_at(k)` for k in [start, stop), in order, each put on the devices by `put`.

    With `depth` > 0 a daemon thread builds up to `depth` batches ahead (a bounded queue), so the
    host builds batch k+1 while the devices run step k. An error in the thread is raised by `get`
    of the batch it failed on (with its own traceback), never a hang."""

    def __init__(self, batch_at: Callable[[int], dict], put: Callable[[dict], dict], start: int, stop: int,
                 depth: int) -> None:  # fmt: skip
        self.batch_at, self.put, self.depth = batch_at, put, depth
        self.queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self.stopping = threading.Event()
        self.thread = None
        if depth > 0:
            self.thread = threading.Thread(target=self._produce, args=(start, stop), daemon=True,
                                           name="uio2-batches")  # fmt: skip
            self.thread.start()

    def _produce(self, start: int, stop: int) -> None:
        for k in range(start, stop):
            try:
                item: tuple[int, Any, BaseException | None] = (k, self.put(self.batch_at(k)), None)
            except BaseException as err:  # handed to the training loop, which raises it
                item = (k, None, err)
            while not self.stopping.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None or self.stopping.is_set():
                return

    def get(self, position: int) -> dict:
        if self.thread is None:
            return self.put(self.batch_at(position))
        while True:
            try:
                k, batch, err = self.queue.get(timeout=1.0)
                break
            except queue.Empty:
                if not self.thread.is_alive() and self.queue.empty():
                    raise RuntimeError(f"the batch thread ended before batch {position}") from None
        if err is not None:
            raise err
        assert k == position, f"batch {k} arrived for step {position}"
        return batch

    def close(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
