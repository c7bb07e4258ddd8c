"""Shared pieces of the benchmarks (benchmarks/*.py): configs, synthetic batches, timing, a matmul peak."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from uio2_core.config import UIO2Config, get_config


def bench_config(name: str, layers: int | None = None, dtype: str = "float32") -> UIO2Config:
    """A named config, optionally with fewer encoder/decoder layers (a mid-size model on a CPU)."""
    cfg = get_config(name, dtype=dtype)
    if layers is not None:
        t = dataclasses.replace(cfg.transformer, num_encoder_layers=layers, num_decoder_layers=layers)
        cfg = cfg.replace(transformer=t, name=f"{name}-{layers}L")
    return cfg


def synthetic_batch(cfg: UIO2Config, batch: int, text_len: int, modalities: str, seed: int = 0) -> dict:
    """`modalities`: "text" (prompt only) or "all" (text, image, 4 history frames, audio, 1 audio clip)."""
    rng = np.random.default_rng(seed)
    out = {"text": jnp.asarray(rng.integers(3, 32000, size=(batch, text_len)), jnp.int32)}
    if modalities == "all":
        s, h = cfg.image_input_size, cfg.image_history_size
        out["image"] = jnp.asarray(rng.normal(size=(batch, s, s, 3)), jnp.float32)
        out["image_history"] = jnp.asarray(rng.normal(size=(batch, 4, h, h, 3)), jnp.float32)
        out["audio"] = jnp.asarray(rng.normal(size=(batch, 256, 128, 1)), jnp.float32)
        out["audio_history"] = jnp.asarray(rng.normal(size=(batch, 1, 256, 128, 1)), jnp.float32)
    return out


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn` (already compiled: call it once before)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak_flops(n: int = 2048, dtype=jnp.float32, repeats: int = 5) -> float:
    """Dense-matmul FLOP/s measured now, on this device: the yardstick for utilisation."""
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(f(a))
    return 2 * n**3 / median_seconds(lambda: f(a), repeats)


def device_name() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', '')}"
