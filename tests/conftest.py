"""Test-wide settings: fast CPU compiles and a persistent JAX compilation cache."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax  # noqa: E402

_cache_dir = os.environ.get("UIO2_JAX_CACHE_DIR", os.path.expanduser("~/.cache/uio2-embodied/jax"))
os.makedirs(_cache_dir, exist_ok=True)
jax.config.update("jax_compilation_cache_dir", _cache_dir)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
