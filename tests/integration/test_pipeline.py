"""Issue 2 end to end on real parts: HTTP API → JetStream → node agent → libvirt (test driver)
→ events → API. Every service runs as its own process, started by the ``stack`` fixture."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from limiquantix.local.stack import Stack
from tests.support.disks import make_qcow2
from tests.support.flows import (
    FAST_ENV,
    action,
    create_vm,
    get_vm,
    sse_events,
    unique_name,
    wait_gone,
    wait_state,
)

pytestmark = pytest.mark.stack


def vm_files(stack: Stack, node: str, vm_id: str) -> list[str]:
    vm_dir = stack.node_data_dir(node) / "images" / vm_id
    return sorted(p.name for p in vm_dir.iterdir()) if vm_dir.exists() else []


async def test_vm_lifecycle_through_the_api(stack: Stack, api: aiohttp.ClientSession,
                                            tmp_path: Path) -> None:
    """create → running → stop → start → delete, with the record and the files to match."""
    image = make_qcow2(tmp_path / "base.qcow2")
    name = unique_name()
    async with api.post("/v1/vms", json={"name": name, "image": str(image), "vcpus": 1,
                                         "memory_mib": 256, "disk_gib": 1}) as response:
        assert response.status == 202
        created = await response.json()
        assert response.headers["Location"] == f"/v1/vms/{created['id']}"
    assert created["name"] == name and created["state"] == "pending"
    assert created["node"] == "node-a"

    running = await wait_state(api, created["id"], "running")
    assert running["vcpus"] == 1 and running["memory_mib"] == 256
    assert {"disk.qcow2", "seed.iso"} <= set(vm_files(stack, "node-a", created["id"]))

    assert (await action(api, created["id"], "stop"))[0] == 202
    await wait_state(api, created["id"], "stopped")
    assert (await action(api, created["id"], "start"))[0] == 202
    await wait_state(api, created["id"], "running")

    async with api.delete(f"/v1/vms/{created['id']}") as response:
        assert response.status == 202
    await wait_gone(api, created["id"])
    assert vm_files(stack, "node-a", created["id"]) == []
    # The name is free again.
    again = await create_vm(api, name=name, image=str(image), memory_mib=256, disk_gib=1)
    await wait_state(api, again["id"], "running")


async def test_events_stream_shows_the_lifecycle_and_resumes(
        stack: Stack, api: aiohttp.ClientSession, tmp_path: Path) -> None:
    image = make_qcow2(tmp_path / "base.qcow2")
    vm = await create_vm(api, name=unique_name(), image=str(image), memory_mib=256, disk_gib=1)
    seen: list[tuple[str, str, dict[str, object]]] = []

    async def collect() -> None:
        async for event in sse_events(api, f"?vm={vm['id']}&since=600"):
            seen.append(event)
            if event[2].get("state") == "running":
                return

    await asyncio.wait_for(collect(), 30)
    states = [data["state"] for _, kind, data in seen if kind == "vm.state_changed"]
    assert states[-1] == "running" and "creating" in states
    assert all(data["vm_id"] == vm["id"] for _, _, data in seen)
    ids = [int(event_id) for event_id, _, _ in seen]
    assert ids == sorted(ids)

    # Resume after the first event: the rest arrive again, nothing before it.
    resumed: list[str] = []

    async def resume() -> None:
        headers = {"Last-Event-ID": str(ids[0])}
        async for event_id, _, _ in sse_events(api, f"?vm={vm['id']}", headers=headers):
            resumed.append(event_id)
            if len(resumed) == len(ids) - 1:
                return

    await asyncio.wait_for(resume(), 30)
    assert [int(i) for i in resumed] == ids[1:]


async def test_same_idempotency_key_returns_the_same_vm(api: aiohttp.ClientSession,
                                                        tmp_path: Path) -> None:
    image = make_qcow2(tmp_path / "base.qcow2")
    body = {"name": unique_name(), "image": str(image), "memory_mib": 256, "disk_gib": 1}
    key = {"Idempotency-Key": "create-once-1234"}
    first, second = await asyncio.gather(
        create_vm(api, headers=key, **body), create_vm(api, headers=key, **body)
    )
    third = await create_vm(api, headers=key, **body)
    assert first["id"] == second["id"] == third["id"]
    async with api.get("/v1/vms") as response:
        listed = await response.json()
    items = listed["items"] if isinstance(listed, dict) else listed
    assert [v["id"] for v in items if v["name"] == body["name"]] == [first["id"]]
    # The same key with another body is an error, not a second VM.
    async with api.post("/v1/vms", json={**body, "vcpus": 2}, headers=key) as response:
        problem = await response.json()
        assert response.status == 422 and problem["code"] == "idempotency_key_reused"


async def test_illegal_transitions_are_409(api: aiohttp.ClientSession, tmp_path: Path) -> None:
    image = make_qcow2(tmp_path / "base.qcow2")
    vm = await create_vm(api, name=unique_name(), image=str(image), memory_mib=256, disk_gib=1)
    await wait_state(api, vm["id"], "running")
    for name in ("start", "resume"):
        status, problem = await action(api, vm["id"], name)
        assert status == 409, problem
        assert problem["code"] == "illegal_transition"
        assert problem["hint"]
    status, _ = await action(api, vm["id"], "pause")
    assert status == 202
    await wait_state(api, vm["id"], "paused")
    status, problem = await action(api, vm["id"], "reboot")
    assert status == 409 and problem["code"] == "illegal_transition"
    assert (await action(api, vm["id"], "resume"))[0] == 202
    await wait_state(api, vm["id"], "running")


async def test_bad_requests_get_problem_details_and_change_nothing(
        api: aiohttp.ClientSession, stack: Stack) -> None:
    cases = [
        ({"name": "Not_A_DNS_Label", "image": "/x"}, 422),
        ({"name": "ok", "image": "/x", "colour": "blue"}, 422),
        ({"name": "ok", "image": "/x", "vcpus": 0}, 422),
        ({"name": "ok", "image": ""}, 422),
    ]
    for body, status in cases:
        async with api.post("/v1/vms", json=body) as response:
            assert response.status == status, body
            assert response.headers["Content-Type"].startswith("application/problem+json")
            problem = await response.json()
            assert problem["code"] == "invalid_request" and problem["detail"]
    async with aiohttp.ClientSession() as anonymous, \
            anonymous.get(f"{stack.api_url}/v1/vms") as response:
        assert response.status == 401
        assert (await response.json())["code"] == "unauthorized"
    async with api.get("/v1/vms/does-not-exist") as response:
        assert response.status == 404
    async with api.get("/v1/vms") as response:
        listed = await response.json()
    assert (listed["items"] if isinstance(listed, dict) else listed) == []


async def test_a_node_image_gone_leaves_the_vm_in_error_holding_nothing(
        api: aiohttp.ClientSession, tmp_path: Path) -> None:
    """A node path the API cannot check (it is the node's) fails on the node: the VM says why,
    keeps that first error through reconcile passes, and holds no capacity."""
    vm = await create_vm(api, name=unique_name(), image=str(tmp_path / "gone.qcow2"),
                         memory_mib=256, disk_gib=1)
    record = await wait_state(api, vm["id"], "error")
    assert record["error"]["code"] == "image_not_found" and record["error"]["hint"]
    assert record["holds_resources"] is False
    # Deliberate: time passes (two reconcile passes) to show the first error is kept.
    await asyncio.sleep(float(FAST_ENV["LQ_RECONCILE_INTERVAL_S"]) * 2)
    _, later = await get_vm(api, vm["id"])
    assert later["error"] == record["error"]
    async with api.delete(f"/v1/vms/{vm['id']}") as response:
        assert response.status == 202
    await wait_gone(api, vm["id"])
