"""Issue 15 (snapshots, clones, templates) on a real Debian guest, through the HTTP API.

One source VM, three boots in all (source, linked clone, VM from the published template):
- memory snapshot: a file written and a process started before it are back after the file
  was deleted and the process killed, the VM resumed where it was (no boot);
- a linked clone of the running source (a live disk-only snapshot taken for it, frozen into
  a base, the clone an overlay on it), booted while the source runs: its own hostname and
  SSH host keys (cloud-init ran as a new instance), the source's file in it; the snapshot
  is not deleted while the clone exists; a full clone at the same snapshot for the numbers
  (deleted once its disk is made, not booted);
- publish the running source as an image: generalized first by default (its agent answers:
  cloud-init clean, machine-id, SSH host keys; then it is shut down), flattened, compressed,
  uploaded by the node; a VM created from it boots as a new instance (new instance-id,
  hostname, host keys and machine-id, no trace of the source's instance), the file in it.
Run under ``flock /tmp/lq-guest.lock`` (TCG on a shared 2-core machine).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from tests.support.flows import (
    get_vm,
    sse_events,
    unique_name,
    wait_for_state,
    wait_image_state,
)
from tests.support.guest_vm import GuestStack, wait_ready

pytestmark = [pytest.mark.guest, pytest.mark.stack, pytest.mark.timeout(3600),
              pytest.mark.asyncio(loop_scope="module")]

MARK = "/home/admin/keep-me"
SNAPSHOT_TIMEOUT_S = 600


async def _wait_snapshot(api: aiohttp.ClientSession, vm: str, snap: str) -> dict[str, Any]:
    body = await wait_for_state(api, f"/v1/vms/{vm}/snapshots/{snap}", "ready",
                                timeout_s=SNAPSHOT_TIMEOUT_S, interval_s=1, fail_on=("error",))
    assert not body["error"], body
    return body


async def _cloned(api: aiohttp.ClientSession, clone_id: str) -> dict[str, Any]:
    """The clone's ``vm.cloned`` event (its disk made: seconds, sizes)."""
    async with asyncio.timeout(SNAPSHOT_TIMEOUT_S):
        async for _, kind, data in sse_events(api, f"?vm={clone_id}&since=3600"):
            if kind == "vm.cloned":
                return data
    raise AssertionError(f"no vm.cloned event for {clone_id}")


async def test_snapshot_revert_clone_and_template_on_a_real_guest(
        guest_stack: GuestStack) -> None:
    vm = await guest_stack.create_vm(unique_name("snap"))
    await _scenario(guest_stack, vm["id"])


async def _scenario(env: GuestStack, vm_id: str) -> None:
    api = env.api
    source = await wait_ready(api, vm_id)
    ssh = await env.ssh_to(source)
    assert (await ssh(f"echo precious > {MARK} && sync"))[0] == 0
    code, out, err = await ssh("setsid nohup sleep 100000 >/dev/null 2>&1 < /dev/null & echo $!")
    assert code == 0, err
    pid = out.strip()
    machine_id = (await ssh("cat /etc/machine-id"))[1].strip()
    assert machine_id

    # Memory snapshot, then lose the file and the process; the revert brings both back.
    async with api.post(f"/v1/vms/{vm_id}/snapshots",
                        json={"name": "with-memory", "memory": True}) as response:
        assert response.status == 202, await response.text()
    taken = await _wait_snapshot(api, vm_id, "with-memory")
    assert taken["memory"] and taken["vm_state"] == "running" and taken["size_bytes"] > 0
    assert (await ssh(f"rm {MARK} && kill {pid} && sync"))[0] == 0
    assert (await ssh(f"test -e {MARK}"))[0] != 0
    async with api.post(f"/v1/vms/{vm_id}/snapshots/with-memory/revert") as response:
        assert response.status == 202, await response.text()
    await _wait_snapshot(api, vm_id, "with-memory")
    _, reverted = await get_vm(api, vm_id)
    assert reverted["state"] == "ready"
    code, out, err = await ssh(f"cat {MARK} && kill -0 {pid} && cat /proc/{pid}/cmdline")
    assert code == 0, err
    assert out.startswith("precious") and "sleep" in out

    # A linked clone of the RUNNING source, no snapshot chosen: a live disk-only snapshot is
    # taken for it (clone-NAME), frozen once into a base on the node, the clone an overlay on
    # it; it boots with its own identity while the source runs. A full clone at the same
    # snapshot, for the numbers, is deleted as soon as its disk is made.
    clone_name = unique_name("clone")
    started = time.monotonic()
    async with api.post(f"/v1/vms/{vm_id}/clone",
                        json={"name": clone_name, "linked": True}) as response:
        assert response.status == 202, await response.text()
        clone = await response.json()
    env.vms.append(clone["id"])  # removed with the stack should a step below fail
    base_snap = f"clone-{clone_name}"
    assert clone["clone_of"]["linked"] is True and clone["node"] == source["node"]
    linked_made = await _cloned(api, clone["id"])
    linked_s = time.monotonic() - started
    snap = await _wait_snapshot(api, vm_id, base_snap)
    assert snap["id"] == clone["clone_of"]["snapshot_id"] and snap["vm_state"] == "running"
    full_name = unique_name("full")
    started = time.monotonic()
    async with api.post(f"/v1/vms/{vm_id}/clone", json={
            "name": full_name, "snapshot": base_snap, "linked": False}) as response:
        assert response.status == 202, await response.text()
        full = await response.json()
    env.vms.append(full["id"])
    full_made = await _cloned(api, full["id"])
    full_s = time.monotonic() - started
    await env.remove_vm(full["id"])
    print(f"\nlinked clone of the running guest: {linked_s:.1f} s to its disk (node: "
          f"{linked_made['seconds']:.2f} s with the live snapshot, quiesced: "
          f"{snap['quiesced']}, and the base), disk {linked_made['disk_bytes']} B, base "
          f"{linked_made['base_bytes']} B; full clone at that snapshot: {full_s:.1f} s (node: "
          f"{full_made['seconds']:.2f} s), disk {full_made['disk_bytes']} B", flush=True)
    # Events omit fields at their default (linked: true).
    assert linked_made.get("linked", True) and linked_made["base_made"]
    assert full_made["linked"] is False
    assert linked_made["disk_bytes"] < 1 << 20 < full_made["disk_bytes"]
    assert linked_made["base_bytes"] < full_made["disk_bytes"]

    clone = await wait_ready(api, clone["id"])
    assert clone["instance_id"] == clone["id"] != vm_id
    assert set(clone["guest"]["ssh_host_keys"]).isdisjoint(source["guest"]["ssh_host_keys"])
    clone_ssh = await env.ssh_to(clone)
    assert (await clone_ssh("hostname"))[1].strip() == clone_name
    assert (await clone_ssh(f"cat {MARK}"))[1].strip() == "precious"
    assert (await clone_ssh("sudo cat /var/lib/cloud/data/instance-id"))[1].strip() == clone["id"]
    _, still = await get_vm(api, vm_id)
    assert still["state"] == "ready"  # the source ran all along
    async with api.delete(f"/v1/vms/{vm_id}/snapshots/{base_snap}") as response:
        problem = await response.json()
        assert response.status == 409 and problem["code"] == "snapshot_in_use", problem
        assert clone_name in problem["hint"]
    await env.remove_vm(clone["id"])
    async with api.delete(f"/v1/vms/{vm_id}/snapshots/{base_snap}") as response:
        assert response.status == 202, await response.text()

    # Publish the (running) source as a template; a VM from it is a new instance.
    async with api.post(f"/v1/vms/{vm_id}/publish",
                        json={"name": unique_name("tpl")}) as response:
        assert response.status == 202, await response.text()
        template = await response.json()
    active = await wait_image_state(api, template["id"], "active", "error", timeout_s=1800)
    assert active["state"] == "active", active
    assert active["format"] == "qcow2" and active["os"] == "debian"
    assert active["labels"]["generalized"] == "true"  # the default: the agent answered
    _, generalized = await get_vm(api, vm_id)
    assert generalized["state"] == "stopped"  # shut down after the guest was cleaned
    child_name = unique_name("child")
    child = await env.create_vm(child_name, image=template["id"])
    child = await wait_ready(api, child["id"])
    assert set(child["guest"]["ssh_host_keys"]).isdisjoint(source["guest"]["ssh_host_keys"])
    child_ssh = await env.ssh_to(child)
    assert (await child_ssh("hostname"))[1].strip() == child_name
    assert (await child_ssh("sudo cat /var/lib/cloud/data/instance-id"))[1].strip() == child["id"]
    assert (await child_ssh(f"cat {MARK}"))[1].strip() == "precious"
    child_machine_id = (await child_ssh("cat /etc/machine-id"))[1].strip()
    assert child_machine_id and child_machine_id != machine_id
    assert (await child_ssh("ls /var/lib/cloud/instances"))[1].split() == [child["id"]]
