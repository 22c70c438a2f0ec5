"""Nothing gets stuck (issue 11) on the real stack: a gateway killed mid-create, a name or a
record left half-made, a node gone for good, NATS down — every create ends, no name leaks."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from limiquantix.common.kv_records import bucket_keys
from limiquantix.common.model import utcnow
from limiquantix.common.vm_store import VmStore
from limiquantix.common.vms import VmRecord
from limiquantix.local.stack import Stack
from tests.support.flows import (
    FAST_ENV,
    create_until_answered,
    create_vm,
    get_vm,
    unique_name,
    wait_gone,
    wait_state,
)

pytestmark = pytest.mark.stack

SWEEP_AFTER_S = 2.0


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    env = {**FAST_ENV, "LQ_CREATE_SWEEP_AFTER_S": str(SWEEP_AFTER_S), "LQ_NODE_VCPUS": "64"}
    async with Stack(tmp_path / "s", extra_env=env) as running:
        yield running


def _pending(name: str, node: str = "node-a") -> VmRecord:
    now = utcnow()
    vm_id = str(uuid.uuid4())
    return VmRecord(id=vm_id, name=name, node=node, vcpus=1, memory_mib=128, disk_gib=1,
                    instance_id=vm_id, created_at=now, updated_at=now)


async def test_a_record_whose_command_was_never_sent_is_created_by_the_sweeper(
        api: aiohttp.ClientSession, store: VmStore) -> None:
    """What a gateway killed between the record and the command leaves behind."""
    record = _pending(unique_name())
    await store.create(record)  # name and record, no command: the gateway "died" here
    await wait_state(api, record.id, "running", timeout_s=SWEEP_AFTER_S * 5)


async def test_a_name_whose_record_was_never_written_is_freed(
        api: aiohttp.ClientSession, store: VmStore) -> None:
    name = unique_name()
    await store.names.create(name, str(uuid.uuid4()).encode())  # died before the record
    deadline = time.monotonic() + SWEEP_AFTER_S * 5
    while True:
        async with api.post("/v1/vms", json={"name": name, "memory_mib": 128}) as response:
            if response.status == 202:
                vm = await response.json()
                break
            problem = await response.json()
            assert problem["code"] == "name_taken", problem
            assert "interrupted create" in problem["hint"], problem  # no VM shows by the name
        assert time.monotonic() < deadline, "the orphaned name was never freed"
        await asyncio.sleep(0.2)
    await wait_state(api, vm["id"], "running")


async def test_a_gateway_killed_during_a_burst_of_creates_leaves_nothing_behind(
        stack: Stack, api: aiohttp.ClientSession, store: VmStore) -> None:
    bodies = [{"name": unique_name("burst"), "memory_mib": 64, "disk_gib": 1} for _ in range(40)]
    keys = [str(uuid.uuid4()) if i % 2 == 0 else None for i in range(len(bodies))]

    async def kill_and_restart() -> None:
        await asyncio.sleep(0.3)  # deliberate: the kill lands in the middle of the burst
        await stack.kill_api()
        await stack.start_api()

    results = await asyncio.gather(
        kill_and_restart(),
        *(create_until_answered(api, body, key) for body, key in zip(bodies, keys, strict=True)))
    created = results[1:]
    # Retried keys answer the VM their first attempt made.
    for body, key, vm in zip(bodies, keys, created, strict=True):
        if key:
            assert vm is not None
            again = await create_until_answered(api, body, key)
            assert again is not None and again["id"] == vm["id"]
    # A create without a key that was cut off between its name and its record answered
    # name_taken to its retry (no key proves the name is its own); the sweeper frees such a
    # name, and the client that sends the create once more then gets its VM. Nothing is lost.
    for body, vm in zip(bodies, created, strict=True):
        if vm is None and (await get_vm(api, body["name"]))[0] == 404:
            await _create_once_the_name_is_free(api, body)
    # Every create ended: running (the node had room for all), nothing pending.
    deadline = time.monotonic() + SWEEP_AFTER_S * 10
    while True:
        async with api.get("/v1/vms") as response:
            vms = (await response.json())["items"]
        states = {vm["state"] for vm in vms}
        if states <= {"running"} and len(vms) == len(bodies):
            break
        assert time.monotonic() < deadline, sorted((vm["name"], vm["state"]) for vm in vms)
        await asyncio.sleep(0.2)
    # No name leaked: every name maps to a VM that exists.
    names = await bucket_keys(store.names)
    existing = {vm["name"] for vm in vms}
    for name in names:
        if await store.id_for_name(name) is not None:
            assert name in existing, f"leaked name {name}"


async def _create_once_the_name_is_free(api: aiohttp.ClientSession,
                                       body: dict[str, object]) -> None:
    deadline = time.monotonic() + SWEEP_AFTER_S * 10
    while True:
        async with api.post("/v1/vms", json=body) as response:
            if response.status == 202:
                return
            problem = await response.json()
        if (await get_vm(api, str(body["name"])))[0] == 200:
            return  # the cut-off create had written its record after all
        assert problem["code"] == "name_taken", problem
        assert "interrupted" in problem["hint"], problem  # says why no VM shows by this name
        assert time.monotonic() < deadline, f"the name {body['name']} was never freed"
        await asyncio.sleep(0.2)


async def test_a_vm_on_a_node_gone_for_good_shows_unknown_and_can_be_force_deleted(
        stack: Stack, api: aiohttp.ClientSession) -> None:
    vm = await create_vm(api, name=unique_name(), memory_mib=128, disk_gib=1)
    await wait_state(api, vm["id"], "running")
    files = stack.node_data_dir("node-a") / "images" / vm["id"]
    assert files.exists()
    await stack.kill_node("node-a")
    await wait_state(api, vm["id"], "unknown", timeout_s=15)  # heartbeat TTL: 3 beats
    async with api.delete(f"/v1/vms/{vm['id']}") as response:
        assert response.status == 202  # queued for a node that may never come back ...
    async with api.delete(f"/v1/vms/{vm['id']}") as response:
        assert response.status == 409  # ... so a second plain delete is refused
    async with api.delete(f"/v1/vms/{vm['id']}?force=maybe") as response:
        assert response.status == 422
    async with api.delete(f"/v1/vms/{vm['id']}?force=true") as response:
        assert response.status == 202
    assert (await get_vm(api, vm["id"]))[0] == 404
    await stack.start_node("node-a")  # it comes back: the forced delete removes its leftovers
    deadline = time.monotonic() + 15
    while files.exists():
        assert time.monotonic() < deadline, "the returning node kept the deleted VM's files"
        await asyncio.sleep(0.1)
    again = await create_vm(api, name=vm["name"], memory_mib=128, disk_gib=1)  # name is free
    await wait_state(api, again["id"], "running")


async def test_nats_down_answers_503_with_retry_after_and_creates_resume(
        stack: Stack, api: aiohttp.ClientSession) -> None:
    await stack.nats.stop()
    try:
        async with api.post("/v1/vms", json={"name": unique_name(), "memory_mib": 64}) as r:
            assert r.status == 503, await r.text()
            assert r.headers["Retry-After"].isdigit()
            assert (await r.json())["hint"]
    finally:
        await stack.nats.start()
    vm = await create_until_answered(api, {"name": unique_name(), "memory_mib": 64}, None)
    assert vm is not None
    await wait_state(api, vm["id"], "running", timeout_s=30)
    async with api.delete(f"/v1/vms/{vm['id']}") as response:
        assert response.status == 202
    await wait_gone(api, vm["id"])
