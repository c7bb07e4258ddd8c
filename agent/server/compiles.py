"""How many times jax has lowered a function for compilation in this process (jit cache misses).

Counted from jax's own monitoring events, so `/metrics` and `benchmarks/server.py` report real
compilations (e.g. a batch size the model was not compiled for), not an estimate. Imports jax only
when first asked, so the jax-free client never pulls it in.
"""

from __future__ import annotations

import threading
from typing import Any

_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"  # once per jit cache miss, persistent cache or not
_lock = threading.Lock()
_count = 0
_listening = False


def _on_event(event: str, duration: float, **kwargs: Any) -> None:
    global _count
    if event == _EVENT:
        with _lock:
            _count += 1


def compilations() -> int:
    """Lowerings counted since the first call of this function in the process."""
    global _listening
    with _lock:
        if not _listening:
            import jax.monitoring

            jax.monitoring.register_event_duration_secs_listener(_on_event)
            _listening = True
        return _count
