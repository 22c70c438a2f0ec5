"""``lq vm snapshot ...``, ``lq vm clone`` and ``lq vm publish`` (and the typed client under
them) against the real stack (NATS, image library, node agent on libvirt's test driver, API),
with the API as the oracle. Real QEMU: tests/node_agent/test_snapshots_qemu.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from limiquantix.client import Client, Conflict, NotFound
from limiquantix.common.vms import CreateVmRequest
from limiquantix.local.stack import Stack
from tests.cli.test_cli_on_stack import api_get, one_error_line
from tests.support.cli import Lq
from tests.support.disks import make_qcow2
from tests.support.flows import unique_name

pytestmark = pytest.mark.stack


async def test_snapshots_clone_and_publish_with_lq(lq: Lq, stack: Stack, tmp_path: Path) -> None:
    name = unique_name("snap")
    created = await lq("vm", "create", name, "--image", str(make_qcow2(tmp_path / "b.qcow2")),
                       "--memory", "256M", "--disk", "1G", "--wait", "running")
    assert created.code == 0, created.err

    taken = await lq("vm", "snapshot", "create", name, "first", "--memory", "--wait")
    assert taken.code == 0, taken.err
    assert taken.out.strip() == f"{name}: snapshot first ready (with memory)"
    again = await lq("vm", "snapshot", "create", name, "first")
    assert again.code == 1 and "(snapshot_name_taken)" in one_error_line(again.err)
    listed = json.loads((await lq("vm", "snapshot", "list", name, "--json")).out)
    assert [(s["name"], s["state"], s["memory"]) for s in listed] == [("first", "ready", True)]
    table = (await lq("vm", "snapshot", "list", name)).out.splitlines()
    assert table[0].split()[:4] == ["NAME", "STATE", "CREATED", "MEMORY"]
    reverted = await lq("vm", "snapshot", "revert", name, "first", "--wait")
    assert reverted.code == 0, reverted.err
    assert reverted.out.strip().startswith(f"{name}: reverted to first, ")

    clone_name = unique_name("clone")
    cloned = await lq("vm", "clone", name, clone_name, "--full", "--wait")
    assert cloned.code == 0, cloned.err
    assert cloned.out.splitlines()[0].startswith(f"{clone_name}: full clone of {name} on ")
    assert cloned.out.strip().endswith("running")
    clone = api_get(stack, f"/v1/vms/{clone_name}")[1]
    assert clone["clone_of"]["linked"] is False and clone["cloud_init"]["hostname"] == clone_name

    # Linked without a snapshot: one is taken now and named after the clone; it stays while
    # the clone exists. (The test driver keeps no internal snapshot in the qcow2, so this
    # clone's disk cannot be made here: tests/node_agent/test_snapshots_qemu.py boots one.)
    linked_name = unique_name("linked")
    linked = await lq("vm", "clone", name, linked_name, "--linked")
    assert linked.code == 0, linked.err
    assert linked.out.startswith(
        f"{linked_name}: linked clone of {name} at snapshot clone-{linked_name} (taken now) on ")
    in_use = await lq("vm", "snapshot", "delete", name, f"clone-{linked_name}")
    assert in_use.code == 1 and "(snapshot_in_use)" in one_error_line(in_use.err)
    assert linked_name in in_use.err
    # Before any refused delete, show names the linked clones kept on the VM and on which
    # snapshot (the full clone depends on nothing).
    shown = (await lq("vm", "show", name)).out
    assert re.search(r"^linked clones: +1 \(delete them before this VM or those snapshots\)$",
                     shown, re.M), shown
    assert re.search(rf"^linked clone: +{linked_name} on snapshot clone-{linked_name} \(\w+\)$",
                     shown, re.M), shown
    assert clone_name not in shown
    shown = (await lq("vm", "show", linked_name)).out
    assert re.search(rf"^clone of: +{name} \(linked at snapshot clone-{linked_name}\)$",
                     shown, re.M), shown
    assert (await lq("vm", "delete", linked_name, "--wait")).code == 0
    assert "linked clone" not in (await lq("vm", "show", name)).out
    freed = await lq("vm", "snapshot", "delete", name, f"clone-{linked_name}", "--wait")
    assert freed.code == 0, freed.err

    published = await lq("vm", "publish", name, unique_name("tpl"))
    assert published.code == 0, published.err
    assert "is active: qcow2" in published.out
    assert "NOT generalized" in published.out  # the test driver's VMs have no guest agent
    image_id = published.out.split()[4]
    source_id = api_get(stack, f"/v1/vms/{name}")[1]["id"]
    assert api_get(stack, f"/v1/images/{image_id}")[1]["labels"] == {
        "published-from": source_id, "generalized": "false"}
    generalize = await lq("vm", "publish", name, unique_name("tpl"), "--generalize")
    assert generalize.code == 1 and "(generalize_unavailable)" in one_error_line(generalize.err)

    deleted = await lq("vm", "snapshot", "delete", name, "first", "--wait")
    assert deleted.code == 0, deleted.err
    assert api_get(stack, f"/v1/vms/{name}")[1]["snapshots"] == []
    # A full clone outlives its source; show then says so by the id it kept.
    assert (await lq("vm", "delete", name, "--wait")).code == 0
    shown = (await lq("vm", "show", clone_name)).out
    assert re.search(rf"^clone of: +{source_id}, deleted \(full\)$", shown, re.M), shown


async def test_a_template_and_its_linked_clone_with_lq(lq: Lq, stack: Stack,
                                                       tmp_path: Path) -> None:
    name = unique_name("tmpl")
    created = await lq("vm", "create", name, "--image", str(make_qcow2(tmp_path / "t.qcow2")),
                       "--memory", "256M", "--disk", "1G", "--wait", "running")
    assert created.code == 0, created.err
    running = await lq("vm", "template", name)
    assert running.code == 1 and "(illegal_transition)" in one_error_line(running.err)
    assert (await lq("vm", "stop", name, "--wait")).code == 0
    made = await lq("vm", "template", name)
    assert made.code == 0, made.err
    assert made.out.startswith(f"{name}: a template now")
    assert api_get(stack, f"/v1/vms/{name}")[1]["template"] is True

    clone_name = unique_name("linked")
    cloned = await lq("vm", "clone", name, clone_name, "--wait")
    assert cloned.code == 0, cloned.err
    assert cloned.out.splitlines()[0].startswith(f"{clone_name}: linked clone of {name} on ")
    clone = api_get(stack, f"/v1/vms/{clone_name}")[1]
    template = api_get(stack, f"/v1/vms/{name}")[1]
    assert clone["clone_of"]["linked"] is True and clone["node"] == template["node"]
    listed = (await lq("vm", "list")).out
    assert re.search(rf"^{name} +stopped \(template\) ", listed, re.M), listed
    shown = (await lq("vm", "show", clone_name)).out
    assert re.search(rf"^clone of: +{name} \(linked\)$", shown, re.M), shown
    shown = (await lq("vm", "show", name)).out
    assert re.search(r"^template: +yes: frozen", shown, re.M)
    assert re.search(r"^linked clones: +1 \(delete them before this template\)$", shown, re.M)
    assert re.search(rf"^linked clone: +{clone_name} on the template's disk \(running\)$",
                     shown, re.M), shown

    started = await lq("vm", "start", name)
    assert started.code == 1 and "(template_refused)" in one_error_line(started.err)
    in_use = await lq("vm", "delete", name)
    assert in_use.code == 1 and "(template_in_use)" in one_error_line(in_use.err)
    assert clone_name in in_use.err
    assert (await lq("vm", "delete", clone_name, "--wait")).code == 0
    gone = await lq("vm", "delete", name, "--wait")
    assert gone.code == 0, gone.err


def test_typed_client_snapshots(stack: Stack, tmp_path: Path) -> None:
    client = Client(stack.api_url, token=stack.api_token)
    vm = client.vms.create(CreateVmRequest(name=unique_name("tc"),
                                           image=str(make_qcow2(tmp_path / "c.qcow2")),
                                           memory_mib=256, disk_gib=1))
    client.vms.wait_for(vm.id, "running", timeout_s=60)
    snap = client.snapshots.create(vm.id, "s1")
    assert snap.state == "creating"
    ready = client.snapshots.wait(vm.id, "s1", timeout_s=60)
    assert ready is not None and ready.state == "ready" and ready.id == snap.id
    assert [s.name for s in client.snapshots.list(vm.id)] == ["s1"]
    with pytest.raises(Conflict):
        client.snapshots.create(vm.id, "s1")
    with pytest.raises(NotFound):
        client.snapshots.get(vm.id, "nope")
    assert client.snapshots.delete(vm.id, "s1").state == "deleting"
    assert client.snapshots.wait(vm.id, "s1", ("gone",), timeout_s=60) is None
    with pytest.raises(Conflict):  # only a stopped VM becomes a template
        client.snapshots.template(vm.id)
    client.vms.stop(vm.id)
    client.vms.wait_for(vm.id, "stopped", timeout_s=60)
    assert client.snapshots.template(vm.id).template is True
    clone = client.snapshots.clone(vm.id, unique_name("tcl"))
    assert clone.clone_of is not None and clone.clone_of.linked
    assert client.vms.wait_for(clone.id, "running", timeout_s=60).clone_of is not None
