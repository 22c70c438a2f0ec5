"""How every service runs (common/runner.py): start-up objects frozen, SIGTERM drains, the
loop's lag and the collector's pauses measured (common/process_health.py)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client import REGISTRY

from limiquantix.common import process_health

SERVICE = """
import asyncio, gc, json, sys
from limiquantix.common.runner import run_service

async def serve(settings, stop):
    await asyncio.sleep(0)
    print(json.dumps({"frozen": gc.get_freeze_count()}), flush=True)
    await stop.wait()

sys.argv = ["lq-probe"]
run_service("probe", serve)
"""


def test_a_service_freezes_its_start_up_objects_and_stops_cleanly_on_sigterm(
        tmp_path: Path) -> None:
    """What a service imported before it serves (~10^5 objects) is frozen, so no full
    collection walks it again; SIGTERM sets the stop event and the process exits 0."""
    env = {**os.environ, "LQ_DATA_DIR": str(tmp_path), "LQ_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-c", SERVICE], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        assert json.loads(line)["frozen"] > 10_000
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_the_loop_lag_probe_sees_a_blocked_loop_and_collections_are_timed() -> None:
    """What /metrics shows of a loop blocked by synchronous work and of a full collection."""
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    slow_before = sample("lq_event_loop_lag_seconds_count") - sample(
        "lq_event_loop_lag_seconds_bucket", le="0.1")
    probe = asyncio.create_task(process_health.probe_loop_lag(0.05))
    try:
        await asyncio.sleep(0.1)  # the probe's timer is armed
        time.sleep(0.3)  # deliberate: blocks the loop, as a synchronous call would
        deadline = time.monotonic() + 5
        while (sample("lq_event_loop_lag_seconds_count")
               - sample("lq_event_loop_lag_seconds_bucket", le="0.1")) <= slow_before:
            assert time.monotonic() < deadline, "the probe saw no lag over 0.1 s"
            await asyncio.sleep(0.05)
    finally:
        probe.cancel()

    process_health.time_gc()
    process_health.time_gc()  # once per process, however often it is asked
    assert gc.callbacks.count(process_health._on_gc) == 1
    full_before = sample("lq_gc_pause_seconds_count", generation="2")
    gc.collect()
    assert sample("lq_gc_pause_seconds_count", generation="2") == full_before + 1
