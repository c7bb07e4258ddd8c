"""Counters and latency windows behind `/metrics`: enough to see whether batching pays off."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

import numpy as np


def percentiles(values: Any) -> dict[str, float]:
    if not values:
        return {"count": 0}
    a = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "count": int(a.size),
        "mean": float(a.mean()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": float(a.max()),
    }


class Metrics:
    """Thread-safe: written by the event loop, read by HTTP requests and tests."""

    def __init__(self, window: int = 4096):
        self._lock = threading.Lock()
        self.started = time.time()
        self.counters: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.batch_sizes: Counter[int] = Counter()
        self.act_ms: deque[float] = deque(maxlen=window)  # request in -> reply out, per act request
        self.model_ms: deque[float] = deque(maxlen=window)  # one backend call (one batch)
        self.queue_ms: deque[float] = deque(maxlen=window)  # submitted -> batch starts, per row

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def error(self, code: str) -> None:
        with self._lock:
            self.errors[code] += 1

    def batch(self, size: int, model_ms: float, queue_ms: list[float]) -> None:
        with self._lock:
            self.batch_sizes[size] += 1
            self.model_ms.append(model_ms)
            self.queue_ms.extend(queue_ms)

    def act(self, ms: float) -> None:
        with self._lock:
            self.act_ms.append(ms)

    def snapshot(self, **gauges: Any) -> dict[str, Any]:
        with self._lock:
            sizes = self.batch_sizes
            batches = sum(sizes.values())
            rows = sum(k * v for k, v in sizes.items())
            return {
                "uptime_s": time.time() - self.started,
                **gauges,
                "counters": dict(self.counters),
                "errors": dict(self.errors),
                "batches": batches,
                "batch_size": {
                    "mean": rows / batches if batches else 0.0,
                    "max": max(sizes, default=0),
                    "histogram": {str(k): v for k, v in sorted(sizes.items())},
                },
                "act_latency_ms": percentiles(list(self.act_ms)),
                "model_latency_ms": percentiles(list(self.model_ms)),
                "queue_ms": percentiles(list(self.queue_ms)),
            }
