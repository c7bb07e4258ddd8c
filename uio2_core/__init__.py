"""The complete Unified-IO 2 model in JAX / Flax NNX. Knows nothing of robots or environments."""
