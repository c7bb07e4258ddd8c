"""A weighted mixture of batch sources, deterministic by (seed, position) like each source.

`uio2 train --denoise image:0.2,text:0.1` mixes the task batches with mixture-of-denoisers batches:
each training step draws one source with these probabilities, so a step's batch depends only on
(seed, position) and resuming after a crash replays the same sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

BatchFn = Callable[[int], dict[str, Any]]


class MixtureData:
    def __init__(self, sources: Sequence[BatchFn], weights: Sequence[float], *, seed: int = 0) -> None:
        w = np.asarray(weights, np.float64)
        if len(sources) == 0 or w.shape != (len(sources),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights {list(weights)} must be one non-negative number per source, not all 0")
        self.sources, self.weights, self.seed = list(sources), w / w.sum(), seed

    def source_at(self, position: int) -> int:
        """Which source gives the batch at `position`."""
        rng = np.random.default_rng([self.seed, position, 0x4D])  # 0x4D: "M", apart from the sources' streams
        return int(rng.choice(len(self.sources), p=self.weights))

    def batch_at(self, position: int) -> dict[str, Any]:
        return self.sources[self.source_at(position)](position)
