"""Issue 4 end to end through the HTTP API: a real Debian guest configured by cloud-init.

image imported into the library (from a local HTTP server) -> POST /v1/vms (user admin, a new
ed25519 key, network isolated) -> state ``ready`` -> ssh in with that key, host key equal to the
API's ``guest.ssh_host_keys`` -> stop (ACPI) -> start (cloud-init does not run again) -> delete.
Everything on 127.0.0.1; the guest's NIC is QEMU user networking with restrict=on.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from limiquantix.local.stack import Stack
from tests.flows import action, create_vm, get_vm, unique_name, wait_gone, wait_state
from tests.guest.guest_vm import Ssh, fingerprint_of, free_port, keygen, scan_host_keys

pytestmark = [pytest.mark.guest, pytest.mark.timeout(2400)]

READY_TIMEOUT_S = 900  # TCG on a shared 2-core machine: 45 s when idle, minutes when busy
ENV = {
    "LQ_HEARTBEAT_INTERVAL_S": "1",
    "LQ_RECONCILE_INTERVAL_S": "5",
    "LQ_STOP_TIMEOUT_S": "300",  # the ACPI shutdown must not be cut short by a forced stop
    "LQ_VIRT_TYPE": "qemu",
    "LQ_LOG_LEVEL": "debug",
}
USER_DATA = "#cloud-config\nruncmd:\n  - echo ran >> /var/tmp/custom-runs\n"


@asynccontextmanager
async def serve_file(path: Path) -> AsyncIterator[str]:
    """An HTTP server on 127.0.0.1 serving one file (the 'origin' the library imports from)."""
    async def get(_: web.Request) -> web.FileResponse:
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get(f"/{path.name}", get)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}/{path.name}"
    finally:
        await runner.cleanup()


async def import_image(api: aiohttp.ClientSession, url: str, timeout_s: float = 600) -> str:
    body = {"name": f"debian12-test-{uuid.uuid4().hex[:6]}", "source_url": url,
            "format": "qcow2", "os": "debian", "version": "12", "default_user": "admin"}
    async with api.post("/v1/images", json=body) as response:
        record = await response.json()
        assert response.status == 202, record
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with api.get(f"/v1/images/{record['id']}") as response:
            record = await response.json()
        if record["state"] == "active":
            return str(record["id"])
        assert record["state"] != "error", record
        await asyncio.sleep(0.5)
    raise AssertionError(f"image not active after {timeout_s} s: {record}")


async def wait_ready(api: aiohttp.ClientSession, vm_id: str) -> dict[str, Any]:
    """Until ``ready``; fails at once when the node reports a cloud-init error."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, record = await get_vm(api, vm_id)
        assert status == 200, record
        if record["state"] == "ready":
            return record
        assert record["state"] != "error", record.get("error")
        assert not record.get("guest", {}).get("cloud_init_error"), record["guest"]
        await asyncio.sleep(1)
    raise AssertionError(f"VM not ready after {READY_TIMEOUT_S} s: {record}")


async def console_log(api: aiohttp.ClientSession, vm_id: str) -> str:
    async with api.get(f"/v1/vms/{vm_id}/console-log",
                       params={"max_bytes": str(4 << 20)}) as response:
        assert response.status == 200, await response.text()
        return await response.text()


async def test_real_guest_created_through_the_api_is_reachable_with_its_key(
        guest_image: Path, qemu_tmp: Path) -> None:
    key = keygen(qemu_tmp, "admin")
    public = key.with_suffix(".pub").read_text().strip()
    name = unique_name("guest")
    async with serve_file(guest_image) as url, \
            Stack(qemu_tmp / "s", libvirt_uri="qemu:///system", extra_env=ENV) as stack, \
            aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as api:
        image_id = await import_image(api, url)
        vm = await create_vm(api, name=name, image=image_id, memory_mib=1024, disk_gib=4,
                             cloud_init={"user": "admin", "ssh_authorized_keys": [public],
                                         "user_data": USER_DATA},
                             network={"mode": "isolated"})
        record = await wait_ready(api, vm["id"])

        guest = record["guest"]
        assert guest["boot_seconds"] > 0 and guest["ssh_host_keys"]
        (forward,) = [f for f in record["forwards"] if f["guest_port"] == 22]
        port = forward["host_port"]
        assert record["ssh_command"] == f"ssh -p {port} admin@127.0.0.1"
        known, scanned = await scan_host_keys(port)
        assert sorted(scanned) == sorted(fingerprint_of(k) for k in guest["ssh_host_keys"])
        known_hosts = qemu_tmp / "known_hosts"
        known_hosts.write_text(known)
        ssh = Ssh(port, key, known_hosts)
        code, out, err = await ssh("id admin")
        assert code == 0, err
        assert "(sudo)" in out
        assert (await ssh("sudo -n true"))[0] == 0
        assert (await ssh("hostname"))[1].strip() == name
        assert (await ssh("cat /var/tmp/custom-runs"))[1].split() == ["ran"]
        assert "password_hash" not in record["cloud_init"]

        # Stop is an ACPI shutdown the guest carries out (it logs its power-down).
        assert (await action(api, vm["id"], "stop"))[0] == 202
        await wait_state(api, vm["id"], "stopped", timeout_s=360)
        first_log = await console_log(api, vm["id"])
        assert "reboot: Power down" in first_log

        assert (await action(api, vm["id"], "start"))[0] == 202
        again = await wait_ready(api, vm["id"])
        assert sorted(again["guest"]["ssh_host_keys"]) == sorted(guest["ssh_host_keys"])
        second_boot = (await console_log(api, vm["id"]))[len(first_log):]
        assert "finished at" in second_boot
        assert "BEGIN SSH HOST KEY FINGERPRINTS" not in second_boot  # same instance-id
        code, out, err = await ssh("cat /var/tmp/custom-runs")
        assert code == 0, err
        assert out.split() == ["ran"]  # the per-instance runcmd did not run again

        async with api.delete(f"/v1/vms/{vm['id']}") as response:
            assert response.status == 202
        await wait_gone(api, vm["id"], timeout_s=120)
