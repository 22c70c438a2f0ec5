"""Snapshot and clone routes over HTTP against a real NATS: entries on the record, commands in
JetStream, problem+json refusals with their codes."""

from __future__ import annotations

import msgspec

from limiquantix.common.commands import CreateSnapshot, CreateVm, DeleteSnapshot, RevertSnapshot
from limiquantix.common.vms import SnapshotState, VmDisk, VmState
from tests.api.test_vms_http import BODY, get, post, set_state, store
from tests.support.api_gateway import Gateway
from tests.support.waits import eventually


async def _running_vm(gw: Gateway) -> dict[str, object]:
    await gw.heartbeat("node-a")
    status, vm = await post(gw, "/v1/vms", BODY)
    assert status == 202
    await set_state(gw, str(vm["id"]), VmState.RUNNING)
    return vm


async def _set_snapshot_state(gw: Gateway, vm_id: str, state: SnapshotState) -> None:
    await (await store(gw)).update(vm_id, lambda r: msgspec.structs.replace(r, snapshots=tuple(
        msgspec.structs.replace(s, state=state) for s in r.snapshots)))


async def test_snapshot_is_listed_creating_and_its_command_queued(gw: Gateway) -> None:
    vm = await _running_vm(gw)
    status, snap = await post(gw, "/v1/vms/web-1/snapshots",
                              {"name": "before", "description": "d", "memory": True})
    assert status == 202 and snap["state"] == "creating" and snap["memory"] is True
    command = (await gw.commands("node-a"))[-1]
    assert isinstance(command, CreateSnapshot) and command.snapshot_id == snap["id"]
    _, listed = await get(gw, f"/v1/vms/{vm['id']}/snapshots")
    assert [s["name"] for s in listed["items"]] == ["before"]
    _, record = await get(gw, "/v1/vms/web-1")
    assert record["snapshots"][0]["id"] == snap["id"]
    assert (await get(gw, "/v1/vms/web-1/snapshots/before"))[1]["id"] == snap["id"]


async def test_snapshot_refusals_are_problems_with_codes(gw: Gateway) -> None:
    vm = await _running_vm(gw)
    assert (await post(gw, "/v1/vms/web-1/snapshots", {"name": "a"}))[0] == 202
    status, problem = await post(gw, "/v1/vms/web-1/snapshots", {"name": "a"})
    assert status == 409 and problem["code"] == "snapshot_name_taken"
    await set_state(gw, str(vm["id"]), VmState.STOPPED)
    status, problem = await post(gw, "/v1/vms/web-1/snapshots", {"name": "b", "memory": True})
    assert status == 409 and problem["code"] == "snapshot_refused" and problem["hint"]
    await set_state(gw, str(vm["id"]), VmState.STARTING)
    status, problem = await post(gw, "/v1/vms/web-1/snapshots", {"name": "c"})
    assert status == 409 and problem["code"] == "illegal_transition"
    status, problem = await post(gw, "/v1/vms/web-1/snapshots", {"name": "bad name!"})
    assert status == 422
    await set_state(gw, str(vm["id"]), VmState.RUNNING)
    status, problem = await post(gw, "/v1/vms/web-1/snapshots/a/revert")
    assert status == 409 and problem["code"] == "snapshot_not_ready"
    status, problem = await post(gw, "/v1/vms/web-1/snapshots/nope/revert")
    assert status == 404 and problem["code"] == "snapshot_not_found"


async def test_revert_and_delete_by_name_queue_their_commands(gw: Gateway) -> None:
    vm = await _running_vm(gw)
    _, snap = await post(gw, "/v1/vms/web-1/snapshots", {"name": "s1"})
    await _set_snapshot_state(gw, str(vm["id"]), SnapshotState.READY)
    status, reverting = await post(gw, "/v1/vms/web-1/snapshots/s1/revert")
    assert status == 202 and reverting["state"] == "reverting"
    command = (await gw.commands("node-a"))[-1]
    assert isinstance(command, RevertSnapshot) and command.snapshot_id == snap["id"]
    await _set_snapshot_state(gw, str(vm["id"]), SnapshotState.READY)
    async with gw.client.delete("/v1/vms/web-1/snapshots/s1", headers=gw.auth) as response:
        assert response.status == 202 and (await response.json())["state"] == "deleting"
    command = (await gw.commands("node-a"))[-1]
    assert isinstance(command, DeleteSnapshot) and command.snapshot_id == snap["id"]


async def test_clone_is_a_new_vm_on_the_source_node_with_a_new_identity(gw: Gateway) -> None:
    vm = await _running_vm(gw)
    await (await store(gw)).update(str(vm["id"]), lambda r: msgspec.structs.replace(r, disks=(
        VmDisk(id="d1", name="data", size_gib=1, target="sdf", state="attached"),)))
    status, clone = await post(gw, "/v1/vms/web-1/clone", {"name": "web-2"})
    assert status == 202 and clone["state"] == "pending"
    assert clone["id"] != vm["id"] and clone["instance_id"] == clone["id"]
    assert clone["node"] == "node-a" and clone["cloud_init"]["hostname"] == "web-2"
    assert clone["clone_of"] == {"vm_id": vm["id"], "snapshot_id": "", "linked": False}
    assert clone.get("disks", []) == []  # the system disk only: extra disks are the source's
    command = (await gw.commands("node-a"))[-1]
    assert isinstance(command, CreateVm) and command.vm_id == clone["id"]
    status, problem = await post(gw, "/v1/vms/web-1/clone", {"name": "web-2"})
    assert status == 409 and problem["code"] == "name_taken"
    status, problem = await post(gw, "/v1/vms/web-1/clone",
                                 {"name": "web-3", "snapshot": "missing"})
    assert status == 404 and problem["code"] == "snapshot_not_found"


async def _delete(gw: Gateway, path: str) -> tuple[int, dict[str, object]]:
    async with gw.client.delete(path, headers=gw.auth) as response:
        return response.status, await response.json(content_type=None)


async def test_a_linked_clone_of_a_running_vm_is_made_at_a_snapshot_taken_for_it(
        gw: Gateway) -> None:
    """No snapshot chosen: the gateway lists a new one on the source (``clone-NAME``), queues
    it, and links the clone to it; its snapshot (and the VM) cannot be deleted while the
    clone exists, and the problem names the clone."""
    vm = await _running_vm(gw)
    status, clone = await post(gw, "/v1/vms/web-1/clone", {"name": "web-2", "linked": True})
    assert status == 202, clone
    _, source = await get(gw, "/v1/vms/web-1")
    [snap] = source["snapshots"]
    assert snap["name"] == "clone-web-2" and snap["state"] == "creating"
    assert not snap["memory"] and "web-2" in snap["description"]
    assert clone["clone_of"] == {"vm_id": vm["id"], "snapshot_id": snap["id"], "linked": True}
    assert clone["node"] == source["node"]
    commands = (await gw.commands("node-a"))[-2:]
    assert isinstance(commands[0], CreateSnapshot) and commands[0].snapshot_id == snap["id"]
    assert isinstance(commands[1], CreateVm) and commands[1].vm_id == clone["id"]

    await _set_snapshot_state(gw, str(vm["id"]), SnapshotState.READY)
    status, second = await post(gw, "/v1/vms/web-1/clone",
                                {"name": "web-3", "linked": True, "snapshot": "clone-web-2"})
    assert status == 202 and second["clone_of"]["snapshot_id"] == snap["id"]
    _, source = await get(gw, "/v1/vms/web-1")
    assert len(source["snapshots"]) == 1  # a chosen snapshot: none taken
    status, problem = await _delete(gw, "/v1/vms/web-1/snapshots/clone-web-2")
    assert status == 409 and problem["code"] == "snapshot_in_use"
    assert "web-2, web-3" in str(problem["hint"])
    status, problem = await _delete(gw, "/v1/vms/web-1")
    assert status == 409 and problem["code"] == "snapshot_in_use"
    assert "web-2" in str(problem["hint"])
    status, problem = await _delete(gw, "/v1/vms/web-1?force=true")
    assert status == 409 and problem["code"] == "snapshot_in_use"
    status, full = await post(gw, "/v1/vms/web-1/clone", {"name": "web-4"})
    assert status == 202 and full["clone_of"]["linked"] is False  # full stays the default

    for clone_id in (clone["id"], second["id"]):
        await (await store(gw)).delete((await (await store(gw)).get(str(clone_id)))[0])

    async def deletable() -> bool:
        return (await get(gw, f"/v1/vms/{second['id']}"))[0] == 404

    await eventually(deletable, what="the linked clones gone from the view")
    status, deleting = await _delete(gw, "/v1/vms/web-1/snapshots/clone-web-2")
    assert status == 202 and deleting["state"] == "deleting"


async def test_a_template_is_made_of_a_stopped_vm_only(gw: Gateway) -> None:
    await _running_vm(gw)
    status, problem = await post(gw, "/v1/vms/web-1/template")
    assert status == 409 and problem["code"] == "illegal_transition"
    assert "lq vm stop web-1" in problem["hint"]


async def test_a_template_is_frozen_and_the_base_of_linked_clones(gw: Gateway) -> None:
    vm = await _running_vm(gw)
    await set_state(gw, str(vm["id"]), VmState.STOPPED)
    status, template = await post(gw, "/v1/vms/web-1/template")
    assert status == 200 and template["template"] is True
    assert (await post(gw, "/v1/vms/web-1/template"))[0] == 200  # again: the same answer
    _, listed = await get(gw, "/v1/vms")
    assert [v["template"] for v in listed["items"]] == [True]
    for path, body in (("/v1/vms/web-1/start", None), ("/v1/vms/web-1/snapshots", {"name": "s"})):
        status, problem = await post(gw, path, body)
        assert status == 409 and problem["code"] == "template_refused", path
        assert "lq vm clone web-1" in problem["hint"]
    async with gw.client.patch("/v1/vms/web-1", json={"vcpus": 4}, headers=gw.auth) as response:
        assert response.status == 409
        assert (await response.json())["code"] == "template_refused"

    status, clone = await post(gw, "/v1/vms/web-1/clone", {"name": "web-2"})
    assert status == 202 and clone["clone_of"]["linked"] is True  # linked by default
    assert clone["template"] is False and clone["node"] == template["node"]
    assert isinstance((await gw.commands("node-a"))[-1], CreateVm)
    status, full = await post(gw, "/v1/vms/web-1/clone", {"name": "web-4", "linked": False})
    assert status == 202 and full["clone_of"]["linked"] is False

    status, problem = await _delete(gw, "/v1/vms/web-1")
    assert status == 409 and problem["code"] == "template_in_use"
    assert "web-2" in str(problem["hint"]) and "web-4" not in str(problem["hint"])
    await (await store(gw)).delete((await (await store(gw)).get(str(clone["id"])))[0])

    async def clone_gone() -> bool:
        return (await get(gw, f"/v1/vms/{clone['id']}"))[0] == 404

    await eventually(clone_gone, what="the linked clone gone from the view")
    status, deleting = await _delete(gw, "/v1/vms/web-1")
    assert status == 202 and deleting["state"] == "deleting"
