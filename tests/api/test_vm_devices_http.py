"""Day-2 device routes over HTTP against a real NATS: resize (PATCH), extra disks and media.

The gateway checks each request against the record, writes it (compare-and-set) and queues the
node's command; here a test plays the node by moving the record's state.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from limiquantix.common import subjects
from limiquantix.common.commands import AttachDisk, DetachDisk, EjectMedia, ResizeVm
from limiquantix.common.vm_store import VmStore
from limiquantix.common.vms import VmMedia, VmState
from tests.support.api_gateway import Gateway

BODY = {"name": "web-1", "image": "/images/base.qcow2", "vcpus": 1, "memory_mib": 1024,
        "max_vcpus": 4, "max_memory_mib": 4096}


async def call(gw: Gateway, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with gw.client.request(method, path, json=body, headers=gw.auth) as response:
        return response.status, await response.json(content_type=None)


async def store(gw: Gateway) -> VmStore:
    return VmStore(await gw.js.key_value(subjects.VMS_BUCKET),
                   await gw.js.key_value(subjects.VM_NAMES_BUCKET))


async def vm_in(gw: Gateway, state: VmState, body: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    await gw.heartbeat("node-a", vcpus=2, memory_mib=8192)
    status, vm = await call(gw, "POST", "/v1/vms", body or BODY)
    assert status == 202, vm
    await (await store(gw)).update(vm["id"], lambda r: msgspec.structs.replace(r, state=state))
    await seen(gw, lambda record: record["state"] == state)
    return dict(vm)


async def seen(gw: Gateway, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The record once the gateway's watched view shows what a test (the node) wrote."""
    async with asyncio.timeout(5):
        while True:
            record = (await call(gw, "GET", "/v1/vms/web-1"))[1]
            if predicate(record):
                return dict(record)
            await asyncio.sleep(0.02)


async def test_create_records_the_hot_plug_ceilings(gw: Gateway) -> None:
    vm = await vm_in(gw, VmState.PENDING)
    assert (vm["max_vcpus"], vm["max_memory_mib"]) == (4, 4096)
    status, plain = await call(gw, "POST", "/v1/vms", {"name": "plain", "image": "/i.qcow2"})
    assert status == 202 and (plain["max_vcpus"], plain["max_memory_mib"]) == (1, 1024)
    status, problem = await call(gw, "POST", "/v1/vms",
                                 {"name": "bad", "image": "/i.qcow2", "vcpus": 2, "max_vcpus": 1})
    assert status == 422 and "max_vcpus" in problem["detail"]


async def test_resize_of_a_stopped_vm_writes_the_record_and_queues_the_command(
        gw: Gateway) -> None:
    vm = await vm_in(gw, VmState.STOPPED)
    status, resized = await call(gw, "PATCH", "/v1/vms/web-1",
                                 {"vcpus": 2, "memory_mib": 1536, "disk_gib": 20})
    assert status == 202, resized
    assert (resized["vcpus"], resized["memory_mib"], resized["disk_gib"]) == (2, 1536, 20)
    record, _ = await (await store(gw)).get(vm["id"])
    assert (record.vcpus, record.memory_mib, record.disk_gib) == (2, 1536, 20)
    command = (await gw.commands("node-a"))[-1]
    assert isinstance(command, ResizeVm) and command.vm_id == vm["id"]
    # Past the ceilings while stopped: they follow.
    status, resized = await call(gw, "PATCH", "/v1/vms/web-1", {"memory_mib": 6144})
    assert status == 202 and resized["max_memory_mib"] == 6144


async def test_running_vm_grows_up_to_its_ceilings_and_else_is_told_to_stop_first(
        gw: Gateway) -> None:
    await vm_in(gw, VmState.RUNNING)
    status, resized = await call(gw, "PATCH", "/v1/vms/web-1", {"vcpus": 2, "memory_mib": 1536})
    assert status == 202 and resized["vcpus"] == 2
    for body in ({"vcpus": 5}, {"memory_mib": 8192}, {"vcpus": 1}, {"max_vcpus": 8}):
        status, problem = await call(gw, "PATCH", "/v1/vms/web-1", body)
        assert status == 409 and problem["code"] == "resize_needs_stop", body
        assert "stop" in problem["hint"].lower()
    status, problem = await call(gw, "PATCH", "/v1/vms/web-1", {"memory_mib": 1600})
    assert status == 422 and problem["code"] == "memory_step"


async def test_a_disk_never_shrinks_and_an_empty_patch_is_refused(gw: Gateway) -> None:
    await vm_in(gw, VmState.STOPPED)
    status, problem = await call(gw, "PATCH", "/v1/vms/web-1", {"disk_gib": 5})
    assert status == 422 and problem["code"] == "disk_shrink_refused"
    status, problem = await call(gw, "PATCH", "/v1/vms/web-1", {})
    assert status == 422
    status, problem = await call(gw, "PATCH", "/v1/vms/web-1", {"cpus": 2})
    assert status == 422  # unknown fields are refused


async def test_growth_past_the_node_capacity_is_409_no_capacity(gw: Gateway) -> None:
    await vm_in(gw, VmState.STOPPED)  # the node has 2 x 4.0 = 8 vCPUs, 8192 - 512 MiB
    status, problem = await call(gw, "PATCH", "/v1/vms/web-1", {"memory_mib": 16384})
    assert status == 409 and problem["code"] == "no_capacity"
    record = (await call(gw, "GET", "/v1/vms/web-1"))[1]
    assert record["memory_mib"] == 1024  # nothing changed


@pytest.mark.parametrize("state", [VmState.PENDING, VmState.PAUSED, VmState.DELETING])
async def test_device_changes_are_409_in_states_that_forbid_them(
        gw: Gateway, state: VmState) -> None:
    await vm_in(gw, state)
    for method, path, body in (("PATCH", "/v1/vms/web-1", {"vcpus": 2}),
                               ("POST", "/v1/vms/web-1/disks", {"name": "data", "size_gib": 1}),
                               ("DELETE", "/v1/vms/web-1/media", None)):
        status, problem = await call(gw, method, path, body)
        assert status == 409 and problem["code"] == "illegal_transition", (method, path)


async def test_extra_disks_are_listed_on_the_record_once_and_detached_by_name(
        gw: Gateway) -> None:
    vm = await vm_in(gw, VmState.RUNNING)
    status, updated = await call(gw, "POST", "/v1/vms/web-1/disks",
                                 {"name": "data", "size_gib": 2})
    assert status == 202
    (disk,) = updated["disks"]
    assert (disk["name"], disk["size_gib"], disk["target"], disk["bus"], disk["state"]) == (
        "data", 2, "sdf", "scsi", "attaching")
    command = (await gw.commands("node-a"))[-1]
    assert isinstance(command, AttachDisk) and command.disk_id == disk["id"]
    # A retried request (same name and size) answers the same disk, never a second one.
    status, again = await call(gw, "POST", "/v1/vms/web-1/disks", {"name": "data", "size_gib": 2})
    assert status == 202 and [d["id"] for d in again["disks"]] == [disk["id"]]
    status, problem = await call(gw, "POST", "/v1/vms/web-1/disks",
                                 {"name": "data", "size_gib": 3})
    assert status == 409 and problem["code"] == "disk_name_taken"
    status, second = await call(gw, "POST", "/v1/vms/web-1/disks", {"name": "logs", "size_gib": 1})
    assert [d["target"] for d in second["disks"]] == ["sdf", "sdg"]
    status, removed = await call(gw, "DELETE", "/v1/vms/web-1/disks/data")
    assert status == 202
    assert {d["name"]: d["state"] for d in removed["disks"]}["data"] == "detaching"
    command = (await gw.commands("node-a"))[-1]
    assert isinstance(command, DetachDisk) and command.disk_id == disk["id"]
    status, problem = await call(gw, "DELETE", f"/v1/vms/{vm['id']}/disks/nope")
    assert status == 404 and problem["code"] == "disk_not_found"


async def test_a_windows_vm_without_virtio_drivers_gets_no_extra_disk(gw: Gateway) -> None:
    vm = await vm_in(gw, VmState.STOPPED)
    await (await store(gw)).update(vm["id"], lambda r: msgspec.structs.replace(
        r, os_type="windows", drivers_image=""))
    await seen(gw, lambda record: record["os_type"] == "windows")
    status, problem = await call(gw, "POST", "/v1/vms/web-1/disks", {"name": "d", "size_gib": 1})
    assert status == 409 and problem["code"] == "disks_need_virtio"


async def test_eject_of_an_empty_drive_is_409_and_of_a_full_one_queues_the_eject(
        gw: Gateway) -> None:
    vm = await vm_in(gw, VmState.STOPPED)
    status, problem = await call(gw, "DELETE", "/v1/vms/web-1/media")
    assert status == 409 and problem["code"] == "no_media"
    await (await store(gw)).update(vm["id"], lambda r: msgspec.structs.replace(
        r, media=VmMedia(image=str(uuid.uuid4()), name="tools.iso", state="inserted")))
    await seen(gw, lambda record: record.get("media") is not None)
    status, updated = await call(gw, "DELETE", "/v1/vms/web-1/media")
    assert status == 202 and updated["media"]["state"] == "ejecting"
    assert isinstance((await gw.commands("node-a"))[-1], EjectMedia)
