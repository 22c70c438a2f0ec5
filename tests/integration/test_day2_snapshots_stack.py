"""Snapshots, clone and publish through the whole stack (API, NATS, node agent on libvirt's
test driver, image library), each service its own process: the published image is uploaded
by the node into the library and a VM is created from it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from limiquantix.local.stack import Stack
from tests.support.disks import make_qcow2_with_data
from tests.support.flows import create_vm, get_vm, unique_name, wait_image_state, wait_state

pytestmark = pytest.mark.stack


async def _snapshot(api: aiohttp.ClientSession, vm: str, snap: str) -> dict[str, Any]:
    async with api.get(f"/v1/vms/{vm}/snapshots/{snap}") as response:
        body = await response.json()
        return {"_status": response.status, **body}


async def _wait_snapshot(api: aiohttp.ClientSession, vm: str, snap: str, state: str,
                         timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = await _snapshot(api, vm, snap)
        if body.get("state") == state or (state == "gone" and body["_status"] == 404):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"snapshot {snap} not {state}: {body}")


async def test_snapshot_clone_and_publish_through_the_api(
        stack: Stack, api: aiohttp.ClientSession, tmp_path: Path) -> None:
    image = make_qcow2_with_data(tmp_path / "base.qcow2")
    source = await create_vm(api, name=unique_name(), image=str(image), memory_mib=256,
                             disk_gib=1)
    await wait_state(api, source["id"], "running")

    async with api.post(f"/v1/vms/{source['id']}/snapshots",
                        json={"name": "first", "memory": True}) as response:
        assert response.status == 202
        snap = await response.json()
    ready = await _wait_snapshot(api, source["id"], "first", "ready")
    assert ready["id"] == snap["id"] and ready["memory"] is True
    _, record = await get_vm(api, source["id"])
    assert [s["name"] for s in record["snapshots"]] == ["first"]

    async with api.post(f"/v1/vms/{source['id']}/snapshots/first/revert") as response:
        assert response.status == 202
    await _wait_snapshot(api, source["id"], "first", "ready")

    async with api.post(f"/v1/vms/{source['id']}/clone",
                        json={"name": unique_name("clone")}) as response:
        assert response.status == 202
        clone = await response.json()
    running = await wait_state(api, clone["id"], "running")
    assert running["clone_of"]["vm_id"] == source["id"] and running["node"] == source["node"]

    async with api.post(f"/v1/vms/{source['id']}/publish",
                        json={"name": unique_name("tpl")}) as response:
        assert response.status == 202, await response.text()
        published = await response.json()
        assert response.headers["Location"] == f"/v1/images/{published['id']}"
    active = await wait_image_state(api, published["id"], "active", "error", timeout_s=60)
    assert active["state"] == "active", active
    assert active["format"] == "qcow2"
    assert active["labels"] == {"published-from": source["id"], "generalized": "false"}

    from_template = await create_vm(api, name=unique_name(), image=published["id"],
                                    memory_mib=256, disk_gib=1)
    await wait_state(api, from_template["id"], "running", timeout_s=60)

    async with api.delete(f"/v1/vms/{source['id']}/snapshots/first") as response:
        assert response.status == 202
    await _wait_snapshot(api, source["id"], "first", "gone")
