"""The guest-agent routes on a whole stack whose node runs libvirt's test driver (no guest, so
no agent): every action answers 409 ``agent_unavailable`` with a hint, roles and paths are
checked first, and a boot's first phases are on the record and in the event stream."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import aiohttp

from limiquantix.local.stack import Stack
from tests.support.flows import action, create_vm, sse_events, unique_name, wait_state


async def _call(api: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
                ) -> tuple[int, dict[str, Any]]:
    async with api.request(method, path, **kwargs) as response:
        return response.status, dict(await response.json(content_type=None))


async def test_a_vm_without_a_guest_agent_answers_409_agent_unavailable(
        api: aiohttp.ClientSession) -> None:
    vm = await create_vm(api, name=unique_name("noagent"), memory_mib=256, disk_gib=1)
    record = await wait_state(api, vm["id"], "running")
    assert record["guest"]["agent"]["connected"] is False
    base = f"/v1/vms/{vm['id']}"
    answers = [
        await _call(api, "POST", f"{base}/exec", json={"command": ["cat", "/etc/hostname"]}),
        await _call(api, "PUT", f"{base}/files", params={"path": "/tmp/x"}, data=b"abc"),
        await _call(api, "GET", f"{base}/files", params={"path": "/etc/hostname"}),
        await _call(api, "POST", f"{base}/password", json={"user": "admin", "password": "pw"}),
    ]
    for status, problem in answers:
        assert status == 409, problem
        assert problem["code"] == "agent_unavailable"
        assert "qemu-guest-agent" in problem["hint"]


async def test_guest_routes_check_their_input_before_the_agent(
        api: aiohttp.ClientSession) -> None:
    vm = await create_vm(api, name=unique_name("checks"), memory_mib=256, disk_gib=1)
    await wait_state(api, vm["id"], "running")
    base = f"/v1/vms/{vm['id']}"
    status, problem = await _call(api, "POST", f"{base}/exec", json={"command": []})
    assert status == 422 and problem["code"] == "invalid_request"
    status, problem = await _call(api, "POST", f"{base}/exec",
                                  json={"command": ["true"], "timeout_s": 601})
    assert status == 422
    status, problem = await _call(api, "PUT", f"{base}/files", params={"path": "relative/x"},
                                  data=b"x")
    assert status == 422 and "absolute" in problem["detail"]
    status, problem = await _call(api, "PUT", f"{base}/files",
                                  params={"path": "/tmp/x", "mode": "rwx"}, data=b"x")
    assert status == 422
    status, problem = await _call(api, "POST", f"{base}/password",
                                  json={"user": "bad user", "password": "x"})
    assert status == 422
    status, problem = await _call(api, "POST", "/v1/vms/nosuchvm/exec", json={"command": ["x"]})
    assert status == 404


async def test_a_stopped_vm_says_to_start_it(api: aiohttp.ClientSession) -> None:
    vm = await create_vm(api, name=unique_name("stopped"), memory_mib=256, disk_gib=1)
    await wait_state(api, vm["id"], "running")
    assert (await action(api, vm["id"], "stop"))[0] == 202
    stopped = await wait_state(api, vm["id"], "stopped")
    assert stopped["stopped_by"] == "acpi"  # the test driver obeys ACPI at once; no agent
    status, problem = await _call(api, "POST", f"/v1/vms/{vm['id']}/exec",
                                  json={"command": ["true"]})
    assert status == 409 and problem["code"] == "agent_unavailable"
    assert "lq vm start" in problem["hint"]


async def test_reading_guest_files_needs_the_operator_role(
        stack: Stack, api: aiohttp.ClientSession) -> None:
    vm = await create_vm(api, name=unique_name("roles"), memory_mib=256, disk_gib=1)
    await wait_state(api, vm["id"], "running")
    status, created = await _call(api, "POST", "/v1/tokens",
                                  json={"name": "reader", "role": "viewer"})
    assert status == 201
    async with aiohttp.ClientSession(base_url=stack.api_url, headers={
            "Authorization": f"Bearer {created['token']}"}) as viewer:
        for method, path, kwargs in (
                ("GET", "files", {"params": {"path": "/etc/shadow"}}),
                ("POST", "exec", {"json": {"command": ["id"]}}),
                ("POST", "password", {"json": {"user": "root", "password": "x"}})):
            status, problem = await _call(viewer, method, f"/v1/vms/{vm['id']}/{path}", **kwargs)
            assert status == 403 and problem["code"] == "forbidden", (path, problem)


async def test_a_boot_records_its_first_phases_in_order_with_events(
        api: aiohttp.ClientSession) -> None:
    name = unique_name("phases")
    seen: list[dict[str, Any]] = []

    async def follow() -> None:
        async for _, kind, data in sse_events(api):
            if kind == "vm.phase" and data.get("name") == name:
                seen.append(data)
                if data["phase"] == "booting":
                    return

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.3)  # the stream is open before the create
    vm = await create_vm(api, name=name, memory_mib=256, disk_gib=1)
    record = await wait_state(api, vm["id"], "running")
    await asyncio.wait_for(follower, 15)
    guest = record["guest"]
    assert guest["phase"] == "booting"
    assert list(guest["phases"]) == ["defined", "booting"]
    defined, booting = (datetime.fromisoformat(guest["phases"][p]) for p in ("defined", "booting"))
    assert defined <= booting
    assert [e["phase"] for e in seen] == ["defined", "booting"]
    assert seen[1]["elapsed_s"] == 0.0
