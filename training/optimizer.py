"""Adafactor with UIO2's settings, warmup + rsqrt decay, gradient accumulation, frozen ViT/AST.

Settings from the released fine-tuning config (reference 7.3): decay rate 0.8, beta1 0.9, update
clipping 1.0, factored second moments, parameter-scale updates, global-norm clipping 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

FROZEN_PREFIXES = (
    ("input_embedders", "image", "image_encoder"),
    ("input_embedders", "audio", "image_encoder"),
)


@dataclass(frozen=True)
class OptimizerConfig:
    learning_rate: float = 1e-2  # peak; the released fine-tune peaks at 0.5 / sqrt(2000) ~ 0.011
    warmup_steps: int = 100
    decay_rate: float = 0.8
    beta1: float = 0.9
    clip_norm: float = 1.0
    accumulation_steps: int = 1
    freeze_vit: bool = True


def lr_schedule(cfg: OptimizerConfig) -> optax.Schedule:
    """lr(s) = peak * min(1, s / warmup) * sqrt(warmup / max(s, warmup)): linear warmup, then 1/sqrt(s)."""
    w = float(max(cfg.warmup_steps, 1))

    def schedule(step):
        s = jnp.asarray(step, jnp.float32) + 1.0
        return cfg.learning_rate * jnp.minimum(1.0, s / w) * jnp.sqrt(w / jnp.maximum(s, w))

    return schedule


def _is_frozen(path: tuple) -> bool:
    keys = tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
    return any(keys[: len(p)] == p for p in FROZEN_PREFIXES)


def make_optimizer(cfg: OptimizerConfig, params) -> optax.GradientTransformation:
    """The optimizer for a parameter tree (an nnx.State of Params or any pytree)."""
    adafactor = optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.adafactor(
            lr_schedule(cfg), decay_rate=cfg.decay_rate, momentum=cfg.beta1, clipping_threshold=1.0,
            multiply_by_parameter_scale=True, factored=True,
        ),
    )  # fmt: skip
    if cfg.freeze_vit:
        labels = jax.tree_util.tree_map_with_path(lambda p, _: "frozen" if _is_frozen(p) else "train", params)
        adafactor = optax.multi_transform({"train": adafactor, "frozen": optax.set_to_zero()}, labels)
    if cfg.accumulation_steps > 1:
        adafactor = optax.MultiSteps(adafactor, every_k_schedule=cfg.accumulation_steps)
    return adafactor
