"""Snapshots and clones on the node agent, libvirt's test driver (it keeps snapshot metadata;
its disk files are real, so clones copy real qcow2 data)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path

import msgspec

from limiquantix.api.routes_snapshots import clone_record
from limiquantix.common.commands import (
    CreateSnapshot,
    CreateVm,
    DeleteSnapshot,
    DeleteVm,
    PublishVm,
    RevertSnapshot,
)
from limiquantix.common.events import VmActionFailed, VmCloned, VmPublishProgress, VmSnapshotChanged
from limiquantix.common.images import CreateImageRequest
from limiquantix.common.library_tokens import load_or_create_secret, sign
from limiquantix.common.model import utcnow
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.snapshots import CloneVmRequest
from limiquantix.common.vms import SnapshotState, VmRecord, VmSnapshot, VmState
from limiquantix.image_library.client import ImageLibraryClient
from tests.support.disks import make_qcow2
from tests.support.guest_vm import free_port
from tests.support.images import library_on, wait_image
from tests.support.node_agent import AgentHarness, agent_settings, find_domain, running_agent


async def _snapshot(harness: AgentHarness, vm: VmRecord, name: str, *,
                    memory: bool = False) -> VmSnapshot:
    """Add the entry as the gateway does, then send the command."""
    snap = VmSnapshot(id=str(uuid.uuid4()), name=name, memory=memory, created_at=utcnow())
    await harness.store.update(vm.id, lambda r: msgspec.structs.replace(
        r, snapshots=(*r.snapshots, snap)))
    await harness.send(CreateSnapshot(command_id=uuid.uuid4().hex, vm_id=vm.id,
                                      snapshot_id=snap.id))
    return snap


async def _wait_snapshot(harness: AgentHarness, vm_id: str, snap_id: str,
                         state: SnapshotState | None) -> VmRecord:
    def ok(r: VmRecord | None) -> bool:
        found = [s for s in r.snapshots if s.id == snap_id] if r else []
        return (not found) if state is None else bool(found and found[0].state == state)
    record = await harness.wait_record(vm_id, ok)
    assert record is not None
    return record


async def _mark(harness: AgentHarness, vm_id: str, snap_id: str, state: SnapshotState) -> None:
    await harness.store.update(vm_id, lambda r: msgspec.structs.replace(r, snapshots=tuple(
        msgspec.structs.replace(s, state=state) if s.id == snap_id else s
        for s in r.snapshots)))


async def test_snapshot_is_taken_listed_reverted_and_deleted(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    snap = await _snapshot(harness, vm, "before-upgrade", memory=True)
    record = await _wait_snapshot(harness, vm.id, snap.id, SnapshotState.READY)
    taken = record.snapshots[0]
    assert taken.memory and taken.vm_state == "running" and not taken.quiesced
    dom = find_domain(vm.id)
    assert dom is not None and [s.getName() for s in dom.listAllSnapshots()] == [snap.id]
    assert (harness.vm_dir(vm.id) / "snapshots" / f"{snap.id}.xml").exists()

    await _mark(harness, vm.id, snap.id, SnapshotState.REVERTING)
    await harness.send(RevertSnapshot(command_id=uuid.uuid4().hex, vm_id=vm.id,
                                      snapshot_id=snap.id))
    record = await _wait_snapshot(harness, vm.id, snap.id, SnapshotState.READY)
    assert record.state in (VmState.RUNNING, VmState.READY)

    await _mark(harness, vm.id, snap.id, SnapshotState.DELETING)
    await harness.send(DeleteSnapshot(command_id=uuid.uuid4().hex, vm_id=vm.id,
                                      snapshot_id=snap.id))
    await _wait_snapshot(harness, vm.id, snap.id, None)
    assert dom.listAllSnapshots() == []
    assert not (harness.vm_dir(vm.id) / "snapshots" / f"{snap.id}.xml").exists()
    # The record changes before the event is published: wait for it, not just the record.
    await harness.wait_event(lambda e: isinstance(e, VmSnapshotChanged) and e.vm_id == vm.id
                             and e.action == "deleted")
    actions = [e.action for e in harness.events_of(vm.id, VmSnapshotChanged)
               if isinstance(e, VmSnapshotChanged)]
    assert actions == ["created", "reverted", "deleted"]


async def test_snapshot_of_a_stopped_vm_has_no_memory_and_revert_keeps_it_stopped(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    dom = find_domain(vm.id)
    assert dom is not None
    dom.destroy()
    await harness.wait_state(vm.id, VmState.STOPPED)
    snap = await _snapshot(harness, vm, "cold", memory=True)  # no memory to save: disk only
    record = await _wait_snapshot(harness, vm.id, snap.id, SnapshotState.READY)
    assert record.snapshots[0].vm_state == "stopped" and not record.snapshots[0].memory
    await _mark(harness, vm.id, snap.id, SnapshotState.REVERTING)
    await harness.send(RevertSnapshot(command_id=uuid.uuid4().hex, vm_id=vm.id,
                                      snapshot_id=snap.id))
    record = await _wait_snapshot(harness, vm.id, snap.id, SnapshotState.READY)
    assert record.state == VmState.STOPPED


async def test_agent_killed_mid_snapshot_makes_exactly_one_after_restart(
        harness: AgentHarness, tmp_path: Path) -> None:
    await harness.shutdown()
    await harness.start(failpoints="snapshot_taken=sleep:30")
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    snap = await _snapshot(harness, vm, "crashy")
    dom = find_domain(vm.id)
    assert dom is not None
    async with asyncio.timeout(10):  # taken in libvirt, not yet recorded
        while not dom.listAllSnapshots():
            await asyncio.sleep(0.05)
    await harness.crash()
    await harness.start(failpoints="")
    record = await _wait_snapshot(harness, vm.id, snap.id, SnapshotState.READY)
    assert [s.id for s in record.snapshots] == [snap.id]
    assert [s.getName() for s in dom.listAllSnapshots()] == [snap.id]
    created = [e for e in harness.events_of(vm.id, VmSnapshotChanged)
               if isinstance(e, VmSnapshotChanged) and e.action == "created"]
    assert len(created) == 1


async def test_snapshot_metadata_is_restored_after_libvirt_forgot_the_domain(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    snap = await _snapshot(harness, vm, "keep")
    await _wait_snapshot(harness, vm.id, snap.id, SnapshotState.READY)
    dom = find_domain(vm.id)
    assert dom is not None
    dom.destroy()
    dom.undefineFlags(2)  # VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA: libvirt forgets them
    await _mark(harness, vm.id, snap.id, SnapshotState.REVERTING)
    await harness.send(RevertSnapshot(command_id=uuid.uuid4().hex, vm_id=vm.id,
                                      snapshot_id=snap.id))
    await _wait_snapshot(harness, vm.id, snap.id, SnapshotState.READY)
    dom = find_domain(vm.id)
    assert dom is not None and [s.getName() for s in dom.listAllSnapshots()] == [snap.id]


def _write(disk: Path, pattern: str, offset: str) -> None:
    subprocess.run(["qemu-io", "-c", f"write -P {pattern} {offset} 1M", str(disk)], check=True,
                   capture_output=True)


def _reads(disk: Path, pattern: str, offset: str) -> bool:
    out = subprocess.run(["qemu-io", "-r", "-c", f"read -P {pattern} {offset} 1M", str(disk)],
                         capture_output=True, text=True)
    return out.returncode == 0 and "Pattern verification failed" not in out.stdout


async def _clone(harness: AgentHarness, source: VmRecord, name: str, *,
                 linked: bool = True, snapshot_id: str = "") -> VmRecord:
    current, _ = await harness.store.get(source.id)
    record = clone_record(current, vm_id=str(uuid.uuid4()),
                          body=CloneVmRequest(name=name, linked=linked), snapshot_id=snapshot_id,
                          linked=linked)
    await harness.store.create(record)
    await harness.send(CreateVm(command_id=uuid.uuid4().hex, vm_id=record.id))
    return record


async def _stopped_template(harness: AgentHarness, tmp_path: Path) -> VmRecord:
    """A VM with data written over its image, stopped, then made a template (as the gateway
    does: the record's flag)."""
    source = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(source.id, VmState.RUNNING)
    dom = find_domain(source.id)
    assert dom is not None
    dom.destroy()
    await harness.wait_state(source.id, VmState.STOPPED)
    _write(harness.vm_dir(source.id) / "disk.qcow2", "0x5a", "4M")
    await harness.store.update(source.id, lambda r: msgspec.structs.replace(r, template=True))
    return source


def _info(disk: Path) -> dict[str, object]:
    return dict(json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(disk)],
                                          capture_output=True, text=True, check=True).stdout))


async def test_linked_clone_of_a_template_is_an_overlay_over_its_disk(
        harness: AgentHarness, tmp_path: Path) -> None:
    """The clone's disk is an empty qcow2 whose backing file is the template's disk: made in
    milliseconds, it reads the template's data, and writes go to the clone alone."""
    template = await _stopped_template(harness, tmp_path)
    template_disk = harness.vm_dir(template.id) / "disk.qcow2"
    clone = await _clone(harness, template, f"c{uuid.uuid4().hex[:8]}")
    record = await harness.wait_state(clone.id, VmState.RUNNING)
    disk = harness.vm_dir(clone.id) / "disk.qcow2"
    info = _info(disk)
    assert Path(str(info["full-backing-filename"])).resolve() == template_disk.resolve()
    assert info["virtual-size"] == _info(template_disk)["virtual-size"]
    assert disk.stat().st_size < 1 << 20  # nothing copied
    assert _reads(disk, "0x5a", "4M")
    _write(disk, "0x77", "4M")
    assert _reads(template_disk, "0x5a", "4M")  # the base is untouched
    assert record.instance_id == clone.id and record.cloud_init.hostname == clone.name
    assert record.clone_of is not None and record.clone_of.linked and not record.template
    cloned = [e for e in harness.events_of(clone.id, VmCloned) if isinstance(e, VmCloned)]
    assert len(cloned) == 1 and cloned[0].linked and cloned[0].seconds < 2.0


async def test_linked_clone_of_a_vm_without_a_snapshot_fails_on_the_node(
        harness: AgentHarness, tmp_path: Path) -> None:
    """The gateway always names a snapshot for one (taking it when none was chosen); a command
    that gets through without does not build on a disk that still changes."""
    source = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(source.id, VmState.RUNNING)
    clone = await _clone(harness, source, f"c{uuid.uuid4().hex[:8]}", linked=True)
    failed = await harness.wait_state(clone.id, VmState.ERROR)
    assert failed.error is not None and failed.error.code == "clone_source_unavailable"
    assert not (harness.vm_dir(clone.id) / "disk.qcow2").exists()


async def _internal_snapshot(harness: AgentHarness, vm: VmRecord, snap_id: str) -> None:
    """The test driver keeps snapshot metadata only: put the internal snapshot into the qcow2
    as QEMU does on a real node (qemu-img snapshot -c, the same on-disk result)."""
    subprocess.run(["qemu-img", "snapshot", "-c", snap_id,
                    str(harness.vm_dir(vm.id) / "disk.qcow2")], check=True, capture_output=True)


async def _running_with_snapshot(harness: AgentHarness, tmp_path: Path
                                 ) -> tuple[VmRecord, VmSnapshot, Path]:
    """A running VM with data at 4M, a ready snapshot, then other data written over it."""
    image = make_qcow2(tmp_path / "base.qcow2")
    source = await harness.new_vm(image)
    await harness.wait_state(source.id, VmState.RUNNING)
    disk = harness.vm_dir(source.id) / "disk.qcow2"
    _write(disk, "0x5a", "4M")
    snap = await _snapshot(harness, source, "s1")
    await _wait_snapshot(harness, source.id, snap.id, SnapshotState.READY)
    await _internal_snapshot(harness, source, snap.id)
    _write(disk, "0x66", "4M")  # after the snapshot: not in its base
    return source, snap, image


async def test_linked_clones_at_a_snapshot_share_one_frozen_read_only_base(
        harness: AgentHarness, tmp_path: Path) -> None:
    """The first linked clone freezes the snapshot into bases/<id>.qcow2 (the VM's clusters
    only, over the image), the second reuses it; each clone is an empty overlay on it; the
    snapshot is not deleted while they exist, and is (with its base) once they are gone."""
    source, snap, image = await _running_with_snapshot(harness, tmp_path)
    clones = [await _clone(harness, source, f"c{uuid.uuid4().hex[:8]}", snapshot_id=snap.id)
              for _ in range(2)]
    base = harness.vm_dir(source.id) / "bases" / f"{snap.id}.qcow2"
    made = []
    for clone in clones:
        await harness.wait_state(clone.id, VmState.RUNNING)
        disk = harness.vm_dir(clone.id) / "disk.qcow2"
        info = _info(disk)
        assert Path(str(info["full-backing-filename"])).resolve() == base.resolve()
        assert disk.stat().st_size < 1 << 20
        assert _reads(disk, "0x5a", "4M")  # the snapshot's data, not what came after
        [event] = [e for e in harness.events_of(clone.id, VmCloned) if isinstance(e, VmCloned)]
        made.append(event)
    assert [e.base_made for e in made] == [True, False]  # one base, made once
    assert made[0].linked and made[0].snapshot_id == snap.id and made[0].base_bytes > 0
    assert Path(str(_info(base)["full-backing-filename"])).resolve() == image.resolve()
    assert base.stat().st_mode & 0o222 == 0
    assert sorted(p.name for p in base.parent.iterdir()) == [
        f"{snap.id}.qcow2", f"{snap.id}.users"]
    assert sorted(p.name for p in (base.parent / f"{snap.id}.users").iterdir()) == sorted(
        c.id for c in clones)
    assert _reads(harness.vm_dir(source.id) / "disk.qcow2", "0x66", "4M")  # source unchanged

    await _mark(harness, source.id, snap.id, SnapshotState.DELETING)
    await harness.send(DeleteSnapshot(command_id=uuid.uuid4().hex, vm_id=source.id,
                                      snapshot_id=snap.id))
    refused = await harness.wait_record(source.id, lambda r: bool(
        r and r.snapshots and r.snapshots[0].state == SnapshotState.READY
        and r.snapshots[0].error))
    assert refused is not None and clones[0].id in refused.snapshots[0].error
    assert base.exists()
    for clone in clones:
        await harness.send(DeleteVm(command_id=uuid.uuid4().hex, vm_id=clone.id))
        await harness.wait_record(clone.id, lambda r: r is None)
    await _mark(harness, source.id, snap.id, SnapshotState.DELETING)
    await harness.send(DeleteSnapshot(command_id=uuid.uuid4().hex, vm_id=source.id,
                                      snapshot_id=snap.id))
    await _wait_snapshot(harness, source.id, snap.id, None)
    assert not base.parent.exists() or list(base.parent.iterdir()) == []


async def test_a_linked_clones_snapshot_still_creating_is_taken_by_the_clone_first(
        harness: AgentHarness, tmp_path: Path) -> None:
    """The gateway lists the snapshot and queues both commands; when the clone's create runs
    first it takes the snapshot itself, and the snapshot's own command then finds it ready."""
    source = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(source.id, VmState.RUNNING)
    snap = VmSnapshot(id=str(uuid.uuid4()), name="clone-x", created_at=utcnow())
    await harness.store.update(source.id, lambda r: msgspec.structs.replace(
        r, snapshots=(snap,)))
    await _internal_snapshot(harness, source, snap.id)  # what QEMU would hold once taken
    clone = await _clone(harness, source, f"c{uuid.uuid4().hex[:8]}", snapshot_id=snap.id)
    await harness.wait_state(clone.id, VmState.RUNNING)
    await harness.send(CreateSnapshot(command_id=uuid.uuid4().hex, vm_id=source.id,
                                      snapshot_id=snap.id))
    await harness.until_acked()
    record = await _wait_snapshot(harness, source.id, snap.id, SnapshotState.READY)
    assert [s.id for s in record.snapshots] == [snap.id]
    created = [e for e in harness.events_of(source.id, VmSnapshotChanged)
               if isinstance(e, VmSnapshotChanged) and e.action == "created"]
    assert len(created) == 1
    dom = find_domain(source.id)
    assert dom is not None and [s.getName() for s in dom.listAllSnapshots()] == [snap.id]


async def test_agent_killed_after_freezing_the_base_makes_one_base_and_one_clone(
        harness: AgentHarness, tmp_path: Path) -> None:
    await harness.shutdown()
    await harness.start(failpoints="clone_base_made=sleep:30")
    source, snap, _ = await _running_with_snapshot(harness, tmp_path)
    clone = await _clone(harness, source, f"c{uuid.uuid4().hex[:8]}", snapshot_id=snap.id)
    base = harness.vm_dir(source.id) / "bases" / f"{snap.id}.qcow2"
    async with asyncio.timeout(10):
        while not base.exists():
            await asyncio.sleep(0.05)
    inode = base.stat().st_ino
    await harness.crash()
    await harness.start(failpoints="")
    await harness.wait_state(clone.id, VmState.RUNNING)
    assert base.stat().st_ino == inode  # not frozen a second time
    assert sorted(p.name for p in base.parent.iterdir()) == [
        f"{snap.id}.qcow2", f"{snap.id}.users"]
    [event] = [e for e in harness.events_of(clone.id, VmCloned) if isinstance(e, VmCloned)]
    assert not event.base_made  # the second agent found it
    disk = harness.vm_dir(clone.id) / "disk.qcow2"
    assert Path(str(_info(disk)["full-backing-filename"])).resolve() == base.resolve()
    assert find_domain(clone.id) is not None


async def test_full_clone_of_a_stopped_vm_is_flattened_with_its_data(
        harness: AgentHarness, tmp_path: Path) -> None:
    """(Clones at a snapshot need the real driver, whose snapshots are in the qcow2: e2e.)"""
    source = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(source.id, VmState.RUNNING)
    dom = find_domain(source.id)
    assert dom is not None
    dom.destroy()
    await harness.wait_state(source.id, VmState.STOPPED)
    _write(harness.vm_dir(source.id) / "disk.qcow2", "0x11", "0")
    clone = await _clone(harness, source, f"c{uuid.uuid4().hex[:8]}", linked=False)
    await harness.wait_state(clone.id, VmState.RUNNING)
    disk = harness.vm_dir(clone.id) / "disk.qcow2"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(disk)],
                                     capture_output=True, text=True, check=True).stdout)
    assert "backing-filename" not in info
    assert _reads(disk, "0x11", "0")


async def test_agent_killed_mid_clone_makes_exactly_one_clone(
        harness: AgentHarness, tmp_path: Path) -> None:
    await harness.shutdown()
    await harness.start(failpoints="clone_disk_made=sleep:30")
    source = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(source.id, VmState.RUNNING)
    clone = await _clone(harness, source, f"c{uuid.uuid4().hex[:8]}", linked=False)
    disk = harness.vm_dir(clone.id) / "disk.qcow2"
    async with asyncio.timeout(10):
        while not disk.exists():
            await asyncio.sleep(0.05)
    inode = disk.stat().st_ino
    await harness.crash()
    await harness.start(failpoints="")
    await harness.wait_state(clone.id, VmState.RUNNING)
    assert disk.stat().st_ino == inode  # not copied a second time
    assert sorted(p.name for p in harness.vm_dir(clone.id).iterdir()
                  if p.name.endswith(".qcow2")) == ["disk.qcow2"]
    assert find_domain(clone.id) is not None


async def test_failed_publish_is_the_images_failure_not_the_vms(
        nats_server: NatsServer, tmp_path: Path) -> None:
    """The library cannot be reached: phase ``failed`` with the reason, ``vm.action_failed``
    for ``vm.publish``, the VM still running, no flattened file left behind."""
    settings = agent_settings(nats_server.url, tmp_path / "node",
                              image_library_url=f"http://127.0.0.1:{free_port()}")
    async with running_agent(nats_server, settings) as harness:
        vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
        await harness.wait_state(vm.id, VmState.RUNNING)
        image_id = str(uuid.uuid4())
        await harness.send(PublishVm(command_id=uuid.uuid4().hex, vm_id=vm.id,
                                     image_id=image_id, upload_token="t"))
        failed = await harness.wait_event(
            lambda e: isinstance(e, VmPublishProgress) and e.phase == "failed")
        assert isinstance(failed, VmPublishProgress) and "upload" in failed.message
        phases = [e.phase for e in harness.events_of(vm.id, VmPublishProgress)
                  if isinstance(e, VmPublishProgress)]
        assert phases[0] == "convert" and "upload" in phases and phases[-1] == "failed"
        await harness.wait_event(lambda e: isinstance(e, VmActionFailed)
                                 and e.action == "vm.publish")
        record = await harness.store.find(vm.id)
        assert record is not None and record.state == VmState.RUNNING and record.error is None
        assert not (harness.vm_dir(vm.id) / f"publish-{image_id}.qcow2").exists()


async def test_failed_publish_leaves_its_image_in_error_and_no_file_anywhere(
        nats_server: NatsServer, tmp_path: Path) -> None:
    """A real library: the node fails after converting (fail point), then a generalize the
    test driver cannot do (no guest agent); each image goes from ``queued`` to ``error``, the
    library holds none of its files, the node no flattened file, the VM keeps running."""
    library = library_on(nats_server, tmp_path / "library")
    await library.start()
    try:
        settings = agent_settings(nats_server.url, tmp_path / "node",
                                  image_library_url=library.url,
                                  failpoints="publish_converted=error")
        async with running_agent(nats_server, settings) as harness:
            client = ImageLibraryClient(harness.nc, timeout_s=10)
            vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
            await harness.wait_state(vm.id, VmState.RUNNING)
            for generalize, reason in ((False, "failpoint"), (True, "guest agent")):
                image = await client.create_upload(
                    CreateImageRequest(name=f"tpl-{uuid.uuid4().hex[:6]}", format="qcow2"),
                    created_by="tester")
                token = sign(load_or_create_secret(library.settings), service="gateway",
                             image_id=image.id, method="PUT", subject="tester")
                await harness.send(PublishVm(command_id=uuid.uuid4().hex, vm_id=vm.id,
                                             image_id=image.id, upload_token=token,
                                             generalize=generalize))
                failed = await harness.wait_event(
                    lambda e, i=image.id: isinstance(e, VmPublishProgress)
                    and e.image_id == i and e.phase == "failed")
                assert isinstance(failed, VmPublishProgress) and reason in failed.message
                errored = await wait_image(client, image.id, "error", "active")
                assert errored.state == "error" and errored.error, errored
                assert library.leftovers(image.id) == []
                assert list(harness.vm_dir(vm.id).glob("publish-*")) == []
            record = await harness.store.find(vm.id)
            assert record is not None and record.state == VmState.RUNNING
    finally:
        await library.stop()
