"""Issue 15 (snapshots, clones, templates) on a real Debian guest, through the HTTP API.

One source VM, three boots in all (source, linked clone, VM from the published template):
- memory snapshot: a file written and a process started before it are back after the file
  was deleted and the process killed, the VM resumed where it was (no boot);
- live disk-only snapshot, then a (full) clone at it, booted while the source runs: its own
  hostname and SSH host keys (cloud-init ran as a new instance), the source's file in it;
- publish the running source as an image: generalized first by default (its agent answers:
  cloud-init clean, machine-id, SSH host keys; then it is shut down), flattened, compressed,
  uploaded by the node; a VM created from it boots as a new instance (new instance-id,
  hostname, host keys and machine-id, no trace of the source's instance), the file in it.
Run under ``flock /tmp/lq-guest.lock`` (TCG on a shared 2-core machine).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from limiquantix.local.stack import Stack
from tests.support.flows import create_vm, get_vm, unique_name, wait_image_state
from tests.support.guest_vm import (
    GUEST_STACK_ENV,
    Ssh,
    fingerprint_of,
    import_image,
    keep_evidence,
    keygen,
    remove_vm,
    scan_host_keys,
    serve_file,
    wait_ready,
)

pytestmark = [pytest.mark.guest, pytest.mark.stack, pytest.mark.timeout(3600)]

MARK = "/home/admin/keep-me"
SNAPSHOT_TIMEOUT_S = 600


async def _wait_snapshot(api: aiohttp.ClientSession, vm: str, snap: str) -> dict[str, Any]:
    deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        async with api.get(f"/v1/vms/{vm}/snapshots/{snap}") as response:
            body = await response.json()
            assert response.status == 200, body
        assert body["state"] != "error", body
        if body["state"] == "ready" and not body["error"]:
            return body
        assert not body["error"], body
        await asyncio.sleep(1)
    raise AssertionError(f"snapshot {snap} not ready: {body}")


async def _ssh_to(record: dict[str, Any], key: Path, tmp: Path) -> Ssh:
    """SSH to the VM's forward, its host keys pinned to what the API reported."""
    (forward,) = [f for f in record["forwards"] if f["guest_port"] == 22]
    known, scanned = await scan_host_keys(forward["host_port"])
    assert sorted(scanned) == sorted(fingerprint_of(k) for k in record["guest"]["ssh_host_keys"])
    known_hosts = tmp / f"known_hosts-{record['id']}"
    known_hosts.write_text(known)
    return Ssh(forward["host_port"], key, known_hosts)


async def test_snapshot_revert_clone_and_template_on_a_real_guest(
        guest_image: Path, qemu_tmp: Path) -> None:
    key = keygen(qemu_tmp, "admin")
    public = key.with_suffix(".pub").read_text().strip()
    name = unique_name("snap")
    made: list[str] = []
    async with serve_file(guest_image) as url, \
            Stack(qemu_tmp / "s", libvirt_uri="qemu:///system",
                  extra_env=GUEST_STACK_ENV) as stack, \
            aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as api:
        image_id = await import_image(api, url)
        cloud_init = {"user": "admin", "ssh_authorized_keys": [public]}
        vm = await create_vm(api, name=name, image=image_id, memory_mib=1024, disk_gib=4,
                             cloud_init=cloud_init, network={"mode": "isolated"})
        made.append(vm["id"])
        try:
            await _scenario(api, vm["id"], name, key, qemu_tmp, cloud_init, made)
        except BaseException:
            keep_evidence(stack, name)
            raise
        finally:
            for vm_id in reversed(made):
                await remove_vm(api, vm_id)


async def _scenario(api: aiohttp.ClientSession, vm_id: str, name: str, key: Path, tmp: Path,
                    cloud_init: dict[str, Any], made: list[str]) -> None:
    source = await wait_ready(api, vm_id)
    ssh = await _ssh_to(source, key, tmp)
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

    # A live disk-only snapshot, and a linked clone at it booted while the source runs.
    async with api.post(f"/v1/vms/{vm_id}/snapshots", json={"name": "disk"}) as response:
        assert response.status == 202, await response.text()
    disk_snap = await _wait_snapshot(api, vm_id, "disk")
    assert not disk_snap["memory"] and disk_snap["vm_state"] == "running"
    clone_name = unique_name("clone")
    async with api.post(f"/v1/vms/{vm_id}/clone",
                        json={"name": clone_name, "snapshot": "disk"}) as response:
        assert response.status == 202, await response.text()
        clone = await response.json()
    made.append(clone["id"])
    clone = await wait_ready(api, clone["id"])
    assert clone["instance_id"] == clone["id"] != vm_id
    assert set(clone["guest"]["ssh_host_keys"]).isdisjoint(source["guest"]["ssh_host_keys"])
    clone_ssh = await _ssh_to(clone, key, tmp)
    assert (await clone_ssh("hostname"))[1].strip() == clone_name
    assert (await clone_ssh(f"cat {MARK}"))[1].strip() == "precious"
    assert (await clone_ssh("sudo cat /var/lib/cloud/data/instance-id"))[1].strip() == clone["id"]
    _, still = await get_vm(api, vm_id)
    assert still["state"] == "ready"  # the source ran all along
    await remove_vm(api, clone["id"])
    made.remove(clone["id"])

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
    child = await create_vm(api, name=child_name, image=template["id"], memory_mib=1024,
                            disk_gib=4, cloud_init=cloud_init, network={"mode": "isolated"})
    made.append(child["id"])
    child = await wait_ready(api, child["id"])
    assert set(child["guest"]["ssh_host_keys"]).isdisjoint(source["guest"]["ssh_host_keys"])
    child_ssh = await _ssh_to(child, key, tmp)
    assert (await child_ssh("hostname"))[1].strip() == child_name
    assert (await child_ssh("sudo cat /var/lib/cloud/data/instance-id"))[1].strip() == child["id"]
    assert (await child_ssh(f"cat {MARK}"))[1].strip() == "precious"
    child_machine_id = (await child_ssh("cat /etc/machine-id"))[1].strip()
    assert child_machine_id and child_machine_id != machine_id
    assert (await child_ssh("ls /var/lib/cloud/instances"))[1].split() == [child["id"]]
