"""The deterministic batches of the trainer tests (shared by train_script.py and in-process tests)."""

import numpy as np


def batch_at(position: int) -> dict:
    rng = np.random.default_rng(position)
    targets = np.concatenate([rng.integers(32000, 33000, (4, 5)), np.ones((4, 1)), np.zeros((4, 2))], 1)
    return {
        "text": rng.integers(3, 1000, (4, 10)).astype(np.int32),
        "image": rng.normal(size=(4, 64, 64, 3)).astype(np.float32),
        "targets/text": targets.astype(np.int32),
    }
