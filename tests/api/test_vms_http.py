"""VM routes over HTTP against a real NATS: records in KV, commands in JetStream."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from limiquantix.common import publish, subjects
from limiquantix.common.commands import CreateVm, DeleteVm, StartVm, StopVm, UpdateCloudInit
from limiquantix.common.vm_store import VmStore
from limiquantix.common.vms import VmRecord, VmState
from tests.support.api_gateway import Gateway
from tests.support.waits import eventually

BODY = {"name": "web-1", "image": "/images/base.qcow2", "vcpus": 2, "memory_mib": 1024}


async def post(gw: Gateway, path: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async with gw.client.post(path, json=body, headers={**gw.auth, **(headers or {})}) as r:
        return r.status, await r.json(content_type=None)


async def get(gw: Gateway, path: str) -> tuple[int, Any]:
    async with gw.client.get(path, headers=gw.auth) as response:
        return response.status, await response.json(content_type=None)


async def store(gw: Gateway) -> VmStore:
    return VmStore(await gw.js.key_value(subjects.VMS_BUCKET),
                   await gw.js.key_value(subjects.VM_NAMES_BUCKET))


async def set_state(gw: Gateway, vm_id: str, state: VmState) -> None:
    """What the node agent does when it finishes a step; returns once the gateway's view has
    it (the routes read the view, a moment behind the bucket: seen flaky under load)."""
    await (await store(gw)).update(vm_id, lambda r: msgspec.structs.replace(r, state=state))

    async def seen() -> bool:
        return (await get(gw, f"/v1/vms/{vm_id}"))[1].get("state") == state.value

    await eventually(seen, what=f"the gateway's view showing {vm_id} {state.value}")


async def test_create_answers_202_stores_the_record_and_queues_the_command(gw: Gateway) -> None:
    await gw.heartbeat("node-a")
    body = {**BODY, "cloud_init": {"password": "s3cret-pass"}}
    async with gw.client.post("/v1/vms", json=body, headers=gw.auth) as response:
        assert response.status == 202
        created = await response.json()
        assert response.headers["Location"] == f"/v1/vms/{created['id']}"
    assert created["state"] == "pending" and created["node"] == "node-a"
    assert created["cloud_init"]["password_hash"] == "<set>"
    assert created["cloud_init"]["hostname"] == "web-1"
    stored, _ = await (await store(gw)).get(created["id"])
    assert stored.cloud_init.password_hash.startswith("$6$")
    (command,) = await gw.commands("node-a")
    assert isinstance(command, CreateVm) and command.vm_id == created["id"]
    # No copy of the record (nor its password hash) in the command: the node reads it from KV.
    assert set(msgspec.to_builtins(command)) == {"type", "command_id", "vm_id", "issued_at"}
    # The record is visible at once, by id and by name.
    assert (await get(gw, f"/v1/vms/{created['id']}"))[1]["id"] == created["id"]
    assert (await get(gw, "/v1/vms/web-1"))[1]["id"] == created["id"]


async def test_create_without_any_node_is_409_no_capacity(gw: Gateway) -> None:
    status, problem = await post(gw, "/v1/vms", BODY)
    assert status == 409 and problem["code"] == "no_capacity"
    assert "no node is online" in problem["detail"] and problem["hint"]
    assert (await get(gw, "/v1/vms"))[1]["items"] == []


async def test_explicit_node_must_be_online_and_fit(gw: Gateway) -> None:
    await gw.heartbeat("node-a", memory_mib=2048)
    status, problem = await post(gw, "/v1/vms", {**BODY, "node": "node-z"})
    assert status == 422 and problem["code"] == "unknown_node"
    status, problem = await post(gw, "/v1/vms", {**BODY, "node": "node-a", "memory_mib": 4096})
    assert status == 409 and problem["code"] == "no_capacity"
    assert problem["free_memory_mib"] == 2048
    status, created = await post(gw, "/v1/vms", {**BODY, "node": "node-a"})
    assert status == 202 and created["node"] == "node-a"


async def test_a_burst_of_creates_does_not_overfill_a_node(gw: Gateway) -> None:
    """Between two heartbeats, placement counts the VMs it placed itself."""
    await gw.heartbeat("node-a", memory_mib=4096, vcpus=16)
    await gw.heartbeat("node-b", memory_mib=4096, vcpus=16)
    results = await asyncio.gather(*(
        post(gw, "/v1/vms", {**BODY, "name": f"vm-{i}", "memory_mib": 1024}) for i in range(8)
    ))
    assert sorted(status for status, _ in results) == [202] * 8
    nodes = [created["node"] for _, created in results]
    assert nodes.count("node-a") == 4 and nodes.count("node-b") == 4
    status, problem = await post(gw, "/v1/vms", {**BODY, "name": "vm-9", "memory_mib": 1024})
    assert status == 409 and problem["code"] == "no_capacity"
    assert "largest free memory is 0 MiB" in problem["detail"]


async def test_a_name_is_unique(gw: Gateway) -> None:
    await gw.heartbeat("node-a")
    assert (await post(gw, "/v1/vms", BODY))[0] == 202
    status, problem = await post(gw, "/v1/vms", {**BODY, "vcpus": 1})
    assert status == 409 and problem["code"] == "name_taken"


async def test_same_idempotency_key_and_body_make_one_vm_even_when_racing(gw: Gateway) -> None:
    await gw.heartbeat("node-a")
    key = {"Idempotency-Key": "order-42"}
    results = await asyncio.gather(*(post(gw, "/v1/vms", BODY, key) for _ in range(5)))
    assert {status for status, _ in results} == {202}
    assert len({created["id"] for _, created in results}) == 1
    # Key order and explicit defaults do not make another body.
    reordered = {"memory_mib": 1024, "vcpus": 2, "image": BODY["image"], "name": "web-1",
                 "disk_gib": 10}
    status, again = await post(gw, "/v1/vms", reordered, key)
    assert status == 202 and again["id"] == results[0][1]["id"]
    assert len((await get(gw, "/v1/vms"))[1]["items"]) == 1
    assert len(await gw.commands("node-a")) == 1
    status, problem = await post(gw, "/v1/vms", {**BODY, "vcpus": 1}, key)
    assert status == 422 and problem["code"] == "idempotency_key_reused"


async def test_a_failed_create_releases_its_idempotency_key(gw: Gateway) -> None:
    key = {"Idempotency-Key": "retry-me"}
    assert (await post(gw, "/v1/vms", BODY, key))[1]["code"] == "no_capacity"
    await gw.heartbeat("node-a")
    status, created = await post(gw, "/v1/vms", BODY, key)
    assert status == 202 and created["name"] == "web-1"


async def test_list_filters_by_state_and_node(gw: Gateway) -> None:
    await gw.heartbeat("node-a")
    await gw.heartbeat("node-b", memory_mib=1024)
    await post(gw, "/v1/vms", {**BODY, "name": "a", "node": "node-a"})
    _, b = await post(gw, "/v1/vms", {**BODY, "name": "b", "node": "node-b"})
    await set_state(gw, b["id"], VmState.RUNNING)
    names = lambda listed: [vm["name"] for vm in listed["items"]]  # noqa: E731

    async def b_running() -> bool:  # the watch carries the node's write into the view
        return names((await get(gw, "/v1/vms?state=running"))[1]) == ["b"]

    await eventually(b_running, what="b running in the view")
    assert names((await get(gw, "/v1/vms"))[1]) == ["a", "b"]
    assert names((await get(gw, "/v1/vms?node=node-b"))[1]) == ["b"]
    assert names((await get(gw, "/v1/vms?state=pending"))[1]) == ["a"]
    assert names((await get(gw, "/v1/vms?state=running&node=node-b"))[1]) == ["b"]
    status, problem = await get(gw, "/v1/vms?state=sleeping")
    assert status == 422 and problem["code"] == "invalid_request"


async def test_actions_record_the_transitional_state_then_queue_the_command(
        gw: Gateway) -> None:
    await gw.heartbeat("node-a")
    _, vm = await post(gw, "/v1/vms", BODY)
    status, problem = await post(gw, f"/v1/vms/{vm['id']}/stop")
    assert status == 409 and problem["code"] == "illegal_transition"
    assert problem["state"] == "pending" and problem["hint"]
    await set_state(gw, vm["id"], VmState.RUNNING)
    status, stopping = await post(gw, "/v1/vms/web-1/stop")
    assert status == 202 and stopping["state"] == "stopping"
    record, _ = await (await store(gw)).get(vm["id"])
    assert record.state == VmState.STOPPING
    assert (await get(gw, f"/v1/vms/{vm['id']}"))[1]["state"] == "stopping"  # read own write
    command = (await gw.commands("node-a"))[-1]
    assert isinstance(command, StopVm) and not command.force
    status, _ = await post(gw, f"/v1/vms/{vm['id']}/force-stop")
    assert status == 202
    command = (await gw.commands("node-a"))[-1]
    assert isinstance(command, StopVm) and command.force


async def test_two_racing_actions_cannot_both_pass(gw: Gateway) -> None:
    await gw.heartbeat("node-a")
    _, vm = await post(gw, "/v1/vms", BODY)
    await set_state(gw, vm["id"], VmState.STOPPED)
    results = await asyncio.gather(*(post(gw, f"/v1/vms/{vm['id']}/start") for _ in range(4)))
    assert sorted(status for status, _ in results) == [202, 409, 409, 409]


async def test_delete_marks_deleting_and_queues_delete(gw: Gateway) -> None:
    await gw.heartbeat("node-a")
    _, vm = await post(gw, "/v1/vms", BODY)
    async with gw.client.delete(f"/v1/vms/{vm['id']}", headers=gw.auth) as response:
        assert response.status == 202
        assert (await response.json())["state"] == "deleting"
    assert isinstance((await gw.commands("node-a"))[-1], DeleteVm)
    async with gw.client.delete(f"/v1/vms/{vm['id']}", headers=gw.auth) as response:
        assert response.status == 409
    # The node removes the record: the VM is gone from the API.
    record, _ = await (await store(gw)).get(vm["id"])
    await (await store(gw)).delete(record)

    async def gone() -> bool:
        return (await get(gw, f"/v1/vms/{vm['id']}"))[0] == 404

    await eventually(gone, what="the VM gone from the view")
    status, problem = await get(gw, f"/v1/vms/{vm['id']}")
    assert status == 404 and problem["code"] == "vm_not_found"
    assert (await get(gw, "/v1/vms"))[1]["items"] == []


async def test_cloud_init_update_gets_a_new_instance_id(gw: Gateway) -> None:
    await gw.heartbeat("node-a")
    _, vm = await post(gw, "/v1/vms", BODY)
    status, updated = await post(gw, f"/v1/vms/{vm['id']}/cloud-init",
                                 {"user": "ops", "password": "another-pass"})
    assert status == 202
    assert updated["instance_id"] != vm["instance_id"]
    assert updated["cloud_init"]["user"] == "ops"
    assert updated["cloud_init"]["password_hash"] == "<set>"
    command = (await gw.commands("node-a"))[-1]
    assert isinstance(command, UpdateCloudInit)
    assert command.instance_id == updated["instance_id"]
    assert command.cloud_init.password_hash.startswith("$6$")
    status, problem = await post(gw, f"/v1/vms/{vm['id']}/cloud-init", {"colour": "red"})
    assert status == 422 and problem["code"] == "invalid_request"


async def test_actions_publish_a_state_changed_event_before_the_command(gw: Gateway) -> None:
    await gw.heartbeat("node-a")
    _, vm = await post(gw, "/v1/vms", BODY)
    await set_state(gw, vm["id"], VmState.RUNNING)
    assert (await post(gw, f"/v1/vms/{vm['id']}/pause"))[0] == 202
    sub = await gw.js.subscribe(subjects.vm_events(vm["id"]), ordered_consumer=True)
    states = []
    for _ in range(2):
        msg = await sub.next_msg(timeout=2)
        states.append(msgspec.json.decode(msg.data)["state"])
    await sub.unsubscribe()
    assert states == ["pending", "paused"]


async def test_records_in_the_store_round_trip(gw: Gateway) -> None:
    """What the API wrote is a valid VmRecord another service can decode."""
    await gw.heartbeat("node-a")
    _, vm = await post(gw, "/v1/vms", {**BODY, "network": {"mode": "user",
                                                          "forwards": [{"guest_port": 80}]}})
    record, revision = await (await store(gw)).get(vm["id"])
    assert isinstance(record, VmRecord) and revision > 0
    assert record.network.mode == "user" and record.network.forwards[0].guest_port == 80


async def test_a_command_jetstream_will_not_take_leaves_the_vm_in_error(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    # A leader election is waited out for 10 s; a deleted stream never comes back: 1 s here.
    monkeypatch.setattr(publish, "ELECTION_RETRY_S", 1.0)
    await gw.heartbeat("node-a")
    _, vm = await post(gw, "/v1/vms", BODY)
    await set_state(gw, vm["id"], VmState.RUNNING)
    await gw.js.delete_stream(subjects.COMMANDS_STREAM)  # nothing can be queued now
    status, problem = await post(gw, f"/v1/vms/{vm['id']}/reboot")
    assert status == 503 and problem["code"] == "unavailable"
    record, _ = await (await store(gw)).get(vm["id"])
    assert record.state == VmState.ERROR and record.error is not None
    assert record.error.code == "command_not_queued" and record.error.hint


async def test_retry_of_a_failed_create_that_released_everything_sends_the_create_again(
        gw: Gateway) -> None:
    await gw.heartbeat("node-a")
    _, vm = await post(gw, "/v1/vms", BODY)
    status, problem = await post(gw, f"/v1/vms/{vm['id']}/retry")
    assert status == 409 and problem["code"] == "illegal_transition"  # pending: nothing failed
    await (await store(gw)).update(vm["id"], lambda r: msgspec.structs.replace(
        r, state=VmState.ERROR, holds_resources=False))
    await gw.heartbeat("node-a")
    status, retried = await post(gw, f"/v1/vms/{vm['id']}/retry")
    assert status == 202 and retried["state"] == "pending" and retried["holds_resources"]
    command = (await gw.commands("node-a"))[-1]
    assert isinstance(command, CreateVm) and command.vm_id == vm["id"]


async def test_retry_of_a_vm_in_error_with_its_domain_is_a_start(gw: Gateway) -> None:
    await gw.heartbeat("node-a")
    _, vm = await post(gw, "/v1/vms", BODY)
    await set_state(gw, vm["id"], VmState.ERROR)
    status, retried = await post(gw, f"/v1/vms/{vm['id']}/retry")
    assert status == 202 and retried["state"] == "starting"
    assert isinstance((await gw.commands("node-a"))[-1], StartVm)


async def test_an_empty_body_or_a_key_given_twice_is_refused_and_changes_nothing(
        gw: Gateway) -> None:
    await gw.heartbeat("node-a")
    _, vm = await post(gw, "/v1/vms", {**BODY, "cloud_init": {"ssh_authorized_keys": []}})
    for raw in (b"", b"  ", b'{"user": "a", "user": "b"}'):
        async with gw.client.post(f"/v1/vms/{vm['id']}/cloud-init", data=raw,
                                  headers={**gw.auth, "Content-Type": "application/json"}) as r:
            problem = await r.json()
            assert r.status == 422 and problem["code"] == "invalid_request", problem
    async with gw.client.post("/v1/vms", data=b'{"name": "a", "name": "b"}',
                              headers={**gw.auth, "Content-Type": "application/json"}) as r:
        assert r.status == 422 and "twice" in (await r.json())["detail"]
    assert (await get(gw, f"/v1/vms/{vm['id']}"))[1]["instance_id"] == vm["instance_id"]
