"""How every service runs (common/runner.py): start-up objects frozen, SIGTERM drains."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

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
