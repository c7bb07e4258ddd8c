"""Test-wide settings: fast CPU compiles and a persistent JAX compilation cache."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax

_cache_dir = os.environ.get("UIO2_JAX_CACHE_DIR", os.path.expanduser("~/.cache/uio2-embodied/jax"))
os.makedirs(_cache_dir, exist_ok=True)
jax.config.update("jax_compilation_cache_dir", _cache_dir)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_cfg():
    from uio2_core.config import get_config

    return get_config("tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_cfg):
    """A randomly initialised tiny model without VQ-GANs (shared by the core tests; never mutated)."""
    from uio2_core.model import build_model

    return build_model(tiny_cfg, seed=0, with_vqgan=False)


def make_tiny_batch(cfg, batch_size: int = 2, seed: int = 0, frames: int = 2) -> dict:
    """Every input modality, random values, some padding (text pads, a padded history frame)."""
    rng = np.random.default_rng(seed)
    s, h = cfg.image_input_size, cfg.image_history_size
    text = rng.integers(3, 32000, size=(batch_size, 6)).astype(np.int32)
    text[:, -1] = 0
    text[0, -2:] = [1, 0]
    hist_mask = np.ones((batch_size, frames, cfg.image_history_grid**2), bool)
    hist_mask[:, -1] = False  # the last history frame is padding
    return {
        "text": jnp.asarray(text),
        "image": jnp.asarray(rng.normal(size=(batch_size, s, s, 3)), jnp.float32),
        "image_history": jnp.asarray(rng.normal(size=(batch_size, frames, h, h, 3)), jnp.float32),
        "image_history_mask": jnp.asarray(hist_mask),
        "audio": jnp.asarray(rng.normal(size=(batch_size, 256, 128, 1)), jnp.float32),
        "audio_history": jnp.asarray(rng.normal(size=(batch_size, 1, 256, 128, 1)), jnp.float32),
    }


@pytest.fixture()
def tiny_batch(tiny_cfg):
    return make_tiny_batch(tiny_cfg)


@pytest.fixture()
def batch_factory():
    return make_tiny_batch
