"""Allocation records (compare-and-set reservations per node) against a real NATS: reserved by
creates, released when a VM record leaves, rebuilt from the VM records by the reconciler."""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec

from limiquantix.api import app_keys
from limiquantix.api.allocation_store import ALLOCATIONS, SHARE_GRACE_S
from limiquantix.common import subjects
from limiquantix.common.allocations import (
    NodeAllocation,
    VmShare,
    allocation_decoder,
    allocation_encoder,
)
from limiquantix.common.model import utcnow
from limiquantix.common.vm_store import VmStore
from limiquantix.common.vms import VmRecord, VmState
from tests.support.api_gateway import Gateway
from tests.support.waits import eventually

BODY = {"image": "/images/base.qcow2", "vcpus": 1, "memory_mib": 512}


async def post(gw: Gateway, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with gw.client.post("/v1/vms", json=body, headers=gw.auth) as response:
        return response.status, await response.json(content_type=None)


async def stored(gw: Gateway, node: str) -> NodeAllocation:
    kv = await gw.js.key_value(subjects.ALLOCATIONS_BUCKET)
    return allocation_decoder.decode((await kv.get(node)).value or b"{}")


async def vm_store(gw: Gateway) -> VmStore:
    return VmStore(await gw.js.key_value(subjects.VMS_BUCKET),
                   await gw.js.key_value(subjects.VM_NAMES_BUCKET))


async def test_a_create_reserves_its_share_and_a_removed_record_releases_it(gw: Gateway) -> None:
    await gw.heartbeat("node-a", vcpus=4, memory_mib=1024)  # room for two
    status, vm = await post(gw, {**BODY, "name": "one"})
    assert status == 202
    assert (await stored(gw, "node-a")).vms[vm["id"]].memory_mib == 512
    assert (await post(gw, {**BODY, "name": "two"}))[0] == 202
    status, problem = await post(gw, {**BODY, "name": "three"})
    assert status == 409 and problem["code"] == "no_capacity"
    # The node agent removes a deleted VM's record; the gateway gives its room back.
    record = await (await vm_store(gw)).find(vm["id"])
    assert record is not None
    await (await vm_store(gw)).delete(record)
    await eventually(lambda: _without(gw, "node-a", vm["id"]), what="the release")
    assert (await post(gw, {**BODY, "name": "three"}))[0] == 202


async def _without(gw: Gateway, node: str, vm_id: str) -> bool:
    return vm_id not in (await stored(gw, node)).vms


async def test_a_template_gives_its_room_back_and_its_linked_clone_takes_room(
        gw: Gateway) -> None:
    """A template never runs again (only its disk stays, as in Proxmox): its vCPUs and memory
    are free for other VMs; a clone of it is a VM like any other."""
    await gw.heartbeat("node-a", vcpus=2, memory_mib=512)  # room for one
    _, vm = await post(gw, {**BODY, "name": "golden"})
    assert (await post(gw, {**BODY, "name": "other"}))[1]["code"] == "no_capacity"
    await (await vm_store(gw)).update(
        vm["id"], lambda r: msgspec.structs.replace(r, state=VmState.STOPPED))
    await eventually(lambda: _state_seen(gw, vm["id"], "stopped"), what="the stopped VM")
    async with gw.client.post("/v1/vms/golden/template", headers=gw.auth) as response:
        assert response.status == 200, await response.text()
    await eventually(lambda: _without(gw, "node-a", vm["id"]), what="the template's release")
    async with gw.client.post("/v1/vms/golden/clone", json={"name": "copy"},
                              headers=gw.auth) as response:
        assert response.status == 202, await response.text()
        clone = await response.json()
    assert (await stored(gw, "node-a")).vms[clone["id"]].memory_mib == 512
    assert (await post(gw, {**BODY, "name": "other"}))[1]["code"] == "no_capacity"


async def _state_seen(gw: Gateway, vm_id: str, state: str) -> bool:
    async with gw.client.get(f"/v1/vms/{vm_id}", headers=gw.auth) as response:
        return (await response.json())["state"] == state


async def test_a_failed_create_holds_nothing_and_a_retry_reserves_again(gw: Gateway) -> None:
    await gw.heartbeat("node-a", vcpus=4, memory_mib=1024)
    _, vm = await post(gw, {**BODY, "name": "fails"})
    # What the node records when a create fails before its domain exists.
    await (await vm_store(gw)).update(vm["id"], lambda r: msgspec.structs.replace(
        r, state=VmState.ERROR, holds_resources=False))
    await eventually(lambda: _without(gw, "node-a", vm["id"]), what="the release")
    async with gw.client.post(f"/v1/vms/{vm['id']}/start", headers=gw.auth) as response:
        assert response.status == 202, await response.text()
    assert vm["id"] in (await stored(gw, "node-a")).vms


async def test_the_reconciler_drops_leaked_shares_and_adds_missing_ones(gw: Gateway) -> None:
    """A gateway that crashed after reserving (no record written) leaks nothing for long; a
    record without a share (written before the bucket existed) gets one."""
    await gw.heartbeat("node-a")
    app = gw.client.server.app
    allocations = app[ALLOCATIONS]
    kv = await gw.js.key_value(subjects.ALLOCATIONS_BUCKET)
    old = time.time() - SHARE_GRACE_S - 1
    leaked, young = str(uuid.uuid4()), str(uuid.uuid4())
    await kv.put("node-a", allocation_encoder.encode(NodeAllocation(vms={
        leaked: VmShare(vcpus=2, memory_mib=2048, at=old),
        young: VmShare(vcpus=1, memory_mib=256, at=time.time()),  # its record is being written
    })))
    now = utcnow()
    record = VmRecord(id=str(uuid.uuid4()), name="orphan", state=VmState.RUNNING,
                      node="node-a", vcpus=3, memory_mib=768, disk_gib=1, created_at=now,
                      updated_at=now)
    await (await vm_store(gw)).create(record)
    await eventually(lambda: app[app_keys.VM_VIEW].get(record.id) is not None)
    await eventually(lambda: (allocations.view.get("node-a") or NodeAllocation()).vms.get(leaked))
    assert await allocations.reconcile(app[app_keys.VM_VIEW], await vm_store(gw)) == 1
    fixed = await stored(gw, "node-a")
    assert sorted(fixed.vms) == sorted([young, record.id])
    assert (fixed.vms[record.id].vcpus, fixed.vms[record.id].memory_mib) == (3, 768)
    assert await allocations.reconcile(app[app_keys.VM_VIEW], await vm_store(gw)) == 0
