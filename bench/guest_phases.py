"""Readiness phases of the real guest through the HTTP API: POST -> each phase (issue 14).

    .venv/bin/python bench/guest_phases.py [--runs 3] [--json out.json]

Builds (or reuses) the Debian 12 test image (tests/support/guest_image.py; it has
qemu-guest-agent), starts the whole system on libvirt qemu:///system (TCG), imports the image,
then per run: POST /v1/vms (isolated network, SSH key) and polls the record until the phase
``ready``, noting when the client first saw each phase and the state ``ready`` (the serial-log
signal alone: cloud-init's final line, what readiness was before the phases) and the agent's
connection. The node's own phase times (``guest.phases``) are reported too, relative to the
POST. Medians over the runs; every run is bounded (``--timeout``). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from limiquantix.local.stack import Stack
from tests.support.guest_image import ensure_image
from tests.support.guest_vm import GUEST_STACK_ENV, import_image, keygen, remove_vm, serve_file

PHASES = ("defined", "booting", "network", "cloud_init_done", "ssh", "ready")
POLL_S = 0.25


async def one_run(api: aiohttp.ClientSession, image_id: str, public_key: str, n: int,
                  timeout_s: float) -> dict[str, float]:
    """Seconds from the POST to each phase (node's clock), to state ready and to the agent's
    connection (client's polls); the VM is deleted afterwards."""
    body = {"name": f"bench-phases-{n}-{int(time.time())}", "image": image_id,
            "memory_mib": 1024, "disk_gib": 4, "network": {"mode": "isolated"},
            "cloud_init": {"user": "admin", "ssh_authorized_keys": [public_key]}}
    posted = datetime.now(UTC)
    t0 = time.perf_counter()
    async with api.post("/v1/vms", json=body) as response:
        vm = await response.json()
        assert response.status == 202, vm
    seen: dict[str, float] = {}
    record: dict[str, Any] = {}
    try:
        while time.perf_counter() - t0 < timeout_s:
            async with api.get(f"/v1/vms/{vm['id']}") as response:
                record = await response.json()
            now = time.perf_counter() - t0
            guest = record.get("guest", {})
            if record["state"] == "ready":
                seen.setdefault("state_ready", now)
            if guest.get("agent", {}).get("connected"):
                seen.setdefault("agent_connected", now)
            if guest.get("phase") == "ready" and "state_ready" in seen:
                break
            if record["state"] == "error" or guest.get("cloud_init_error"):
                raise RuntimeError(f"VM failed: {record.get('error') or guest}")
            await asyncio.sleep(POLL_S)
        else:
            raise TimeoutError(f"phase ready not reached in {timeout_s} s: {record.get('guest')}")
    finally:
        await remove_vm(api, vm["id"])
    phases = record["guest"]["phases"]
    result = {p: (datetime.fromisoformat(phases[p]) - posted).total_seconds()
              for p in PHASES if p in phases}
    return {**result, **seen}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900.0, help="per run, seconds")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    image = ensure_image()
    root = Path(tempfile.mkdtemp(prefix="lq-bench-phases-", dir="/var/tmp"))
    root.chmod(0o755)  # QEMU (libvirt-qemu) must traverse it
    runs: list[dict[str, float]] = []
    try:
        public = keygen(root, "bench").with_suffix(".pub").read_text().strip()
        async with serve_file(image) as url, \
                Stack(root / "s", libvirt_uri="qemu:///system",
                      extra_env=GUEST_STACK_ENV) as stack, \
                aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as api:
            image_id = await import_image(api, url)
            for n in range(args.runs):
                runs.append(await one_run(api, image_id, public, n, args.timeout))
                print(f"run {n + 1}: " + ", ".join(f"{k} {v:.1f}s" for k, v in runs[-1].items()),
                      file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    keys = [*PHASES, "agent_connected", "state_ready"]
    medians = {k: round(statistics.median(r[k] for r in runs), 2)
               for k in keys if all(k in r for r in runs)}
    result = {"runs": args.runs, "post_to_s_median": medians,
              "serial_log_only_post_to_ready_s": medians.get("state_ready"),
              "post_to_ssh_s": medians.get("ssh"), "all_runs": runs}
    print(f"{'POST ->':<28}{'median s':>10}")
    for key, value in medians.items():
        label = "state ready (serial log only)" if key == "state_ready" else key
        print(f"{label:<28}{value:>10.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
