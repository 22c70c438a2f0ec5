"""How healthy this process's event loop is: its lag and its garbage collector's pauses.

Both are what an asyncio service's latency tail is made of, and neither shows in a request's
own timings: a loop blocked by synchronous work (or a full collection walking a big heap)
delays every request, heartbeat and ack at once. ``runner.run_service`` starts them for every
service; the histograms are in ``/metrics`` (docs/metrics.md).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Histogram

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_PROBE_S = 0.25  # the timer whose lateness is the lag (4 wakeups a second: nothing)

EVENT_LOOP_LAG = Histogram(
    "lq_event_loop_lag_seconds",
    "How late this process's event loop ran a 0.25 s timer (blocked by work or a collection)",
    buckets=LAG_BUCKETS,
)
GC_PAUSE = Histogram(
    "lq_gc_pause_seconds", "Garbage collections of this process, by generation",
    ["generation"], buckets=LAG_BUCKETS,
)

_gc_started: list[float] = [0.0]
_pause_listeners: list[Callable[[int, float], None]] = []


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
        return
    pause = time.perf_counter() - _gc_started[0]
    GC_PAUSE.labels(str(info["generation"])).observe(pause)
    for listener in _pause_listeners:
        listener(info["generation"], pause)


def time_gc(also: Callable[[int, float], None] | None = None) -> None:
    """Observe every collection's pause from now on (installed once per process); ``also``
    is told each (generation, seconds) too (the fleet bench keeps the exact pauses)."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)
    if also is not None:
        _pause_listeners.append(also)


async def probe_loop_lag(interval_s: float = LAG_PROBE_S,
                         also: Callable[[float], None] | None = None) -> None:
    """Observe, until cancelled, how late a timer of ``interval_s`` fires (``also`` is told
    each lag too)."""
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(interval_s)
        lag = max(0.0, loop.time() - before - interval_s)
        EVENT_LOOP_LAG.observe(lag)
        if also is not None:
            also(lag)
