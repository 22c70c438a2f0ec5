"""Day-2 device commands on libvirt's test driver (definition, files, record, events): resize,
extra disks, media. The test driver has no live device calls; the real QEMU test
(test_day2_devices_qemu.py) checks the running domain."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import msgspec

from limiquantix.common.commands import (
    AttachDisk,
    DetachDisk,
    EjectMedia,
    InsertMedia,
    ResizeVm,
    StopVm,
)
from limiquantix.common.events import (
    VmActionFailed,
    VmDiskAttached,
    VmDiskDetached,
    VmMediaEjected,
    VmMediaInserted,
    VmResized,
)
from limiquantix.common.vms import VmDisk, VmMedia, VmRecord, VmState
from tests.support.disks import make_qcow2
from tests.support.iso import make_iso
from tests.support.node_agent import AgentHarness, find_domain

GIB = 1 << 30


def cid() -> str:
    return uuid.uuid4().hex


def definition(vm_id: str) -> ET.Element:
    dom = find_domain(vm_id)
    assert dom is not None
    return ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def virtual_size(path: Path) -> int:
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return int(json.loads(out)["virtual-size"])


async def stopped_vm(harness: AgentHarness, tmp_path: Path) -> VmRecord:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    await harness.send(StopVm(command_id=cid(), vm_id=vm.id, force=True))
    return await harness.wait_state(vm.id, VmState.STOPPED)


async def change(harness: AgentHarness, vm_id: str, **fields: object) -> VmRecord:
    """Write the record as the gateway does before it sends the command."""
    updated = await harness.store.update(vm_id, lambda r: msgspec.structs.replace(r, **fields))
    assert updated is not None
    return updated


async def test_resize_of_a_stopped_vm_grows_the_disk_and_redefines_the_domain(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await stopped_vm(harness, tmp_path)
    await change(harness, vm.id, vcpus=2, memory_mib=256, disk_gib=2, max_vcpus=4,
                 max_memory_mib=1024)
    await harness.send(ResizeVm(command_id=cid(), vm_id=vm.id))
    event = await harness.wait_event(lambda e: isinstance(e, VmResized) and e.vm_id == vm.id)
    assert isinstance(event, VmResized) and not event.live
    assert (event.vcpus, event.memory_mib, event.disk_gib) == (2, 256, 2)
    root = definition(vm.id)
    vcpu = root.find("vcpu")
    assert vcpu is not None and (vcpu.text, vcpu.get("current")) == ("4", "2")
    assert root.find("maxMemory") is not None and root.find("maxMemory").get("slots") == "16"  # type: ignore[union-attr]
    assert root.find("memory").text == str(256 * 1024)  # type: ignore[union-attr]
    disk = harness.vm_dir(vm.id) / "disk.qcow2"
    assert virtual_size(disk) == 2 * GIB
    saved = (harness.vm_dir(vm.id) / "domain.xml").read_text()
    assert "<maxMemory" in saved and 'current="2"' in saved  # what a lost domain is rebuilt from
    # Redelivered: nothing grows twice, the disk file is not touched.
    before = disk.stat().st_mtime_ns
    await harness.send(ResizeVm(command_id=cid(), vm_id=vm.id))
    await harness.wait_event(lambda e: isinstance(e, VmResized) and e.vm_id == vm.id
                             and e is not event)
    assert disk.stat().st_mtime_ns == before and virtual_size(disk) == 2 * GIB


async def test_resize_of_a_running_vm_on_the_test_driver_changes_the_definition(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    await change(harness, vm.id, vcpus=2, max_vcpus=2)
    await harness.send(ResizeVm(command_id=cid(), vm_id=vm.id))
    await harness.wait_event(lambda e: isinstance(e, VmResized) and e.vm_id == vm.id)
    assert definition(vm.id).find("vcpu").text == "2"  # type: ignore[union-attr]
    record = await harness.store.find(vm.id)
    assert record is not None and record.state == VmState.RUNNING and record.error is None


async def test_an_extra_disk_is_made_once_attached_and_then_detached_and_deleted(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await stopped_vm(harness, tmp_path)
    disk = VmDisk(id=str(uuid.uuid4()), name="data", size_gib=1, target="sdf")
    await change(harness, vm.id, disks=(disk,))
    await harness.send(AttachDisk(command_id=cid(), vm_id=vm.id, disk_id=disk.id))
    record = await harness.wait_record(
        vm.id, lambda r: r is not None and r.disks[0].state == "attached")
    assert record is not None
    path = harness.vm_dir(vm.id) / f"disk-{disk.id}.qcow2"
    assert record.disks[0].path == str(path)
    assert virtual_size(path) == GIB and path.stat().st_mode & 0o007 == 0  # not world-readable
    targets = [t.attrib for t in definition(vm.id).findall("./devices/disk[@device='disk']/target")]
    assert {"dev": "sdf", "bus": "scsi"} in targets
    assert definition(vm.id).find("./devices/controller[@model='virtio-scsi']") is not None
    await harness.wait_event(lambda e: isinstance(e, VmDiskAttached) and e.vm_id == vm.id)
    attached = harness.events_of(vm.id, VmDiskAttached)
    assert len(attached) == 1 and attached[0].disk.id == disk.id  # type: ignore[attr-defined]
    # A redelivered attach makes no second disk.
    inode = path.stat().st_ino
    await harness.send(AttachDisk(command_id=cid(), vm_id=vm.id, disk_id=disk.id))
    await harness.wait_event(lambda e: isinstance(e, VmDiskAttached) and e.vm_id == vm.id
                             and e is not attached[0])
    assert path.stat().st_ino == inode
    assert len(list(harness.vm_dir(vm.id).glob("disk-*.qcow2"))) == 1
    assert len(definition(vm.id).findall("./devices/disk[@device='disk']")) == 2

    await change(harness, vm.id, disks=(msgspec.structs.replace(record.disks[0],
                                                                state="detaching"),))
    await harness.send(DetachDisk(command_id=cid(), vm_id=vm.id, disk_id=disk.id))
    await harness.wait_event(lambda e: isinstance(e, VmDiskDetached) and e.vm_id == vm.id)
    record = await harness.wait_record(vm.id, lambda r: r is not None and not r.disks)
    assert not path.exists()
    assert len(definition(vm.id).findall("./devices/disk[@device='disk']")) == 1
    # Redelivered after everything is gone: nothing to do, no error.
    await harness.send(DetachDisk(command_id=cid(), vm_id=vm.id, disk_id=disk.id))
    await asyncio.sleep(0.5)
    assert await harness.pending_commands() == 0
    assert not harness.events_of(vm.id, VmActionFailed)


async def test_media_is_inserted_from_the_node_cache_and_ejected(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await stopped_vm(harness, tmp_path)
    iso = make_iso(tmp_path / "tools.iso")
    await change(harness, vm.id, media=VmMedia(image=str(iso), name="tools"))
    await harness.send(InsertMedia(command_id=cid(), vm_id=vm.id))
    await harness.wait_event(lambda e: isinstance(e, VmMediaInserted) and e.vm_id == vm.id)
    record = await harness.wait_record(
        vm.id, lambda r: r is not None and r.media is not None and r.media.state == "inserted")
    assert record is not None and record.media is not None
    assert record.media.path == str(iso.resolve())
    drive = definition(vm.id).find("./devices/disk[@device='cdrom']/target[@dev='sde']/..")
    assert drive is not None and drive.find("source").get("file") == str(iso.resolve())  # type: ignore[union-attr]
    seed = definition(vm.id).find("./devices/disk[@device='cdrom']/target[@dev='sda']/..")
    assert seed is not None and seed.find("source").get("file").endswith("seed.iso")  # type: ignore[union-attr]

    await change(harness, vm.id, media=msgspec.structs.replace(record.media, state="ejecting"))
    await harness.send(EjectMedia(command_id=cid(), vm_id=vm.id))
    await harness.wait_event(lambda e: isinstance(e, VmMediaEjected) and e.vm_id == vm.id)
    await harness.wait_record(vm.id, lambda r: r is not None and r.media is None)
    drive = definition(vm.id).find("./devices/disk[@device='cdrom']/target[@dev='sde']/..")
    assert drive is not None and drive.find("source") is None


async def test_a_disk_image_in_the_media_drive_is_refused_with_an_event(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await stopped_vm(harness, tmp_path)
    await change(harness, vm.id, media=VmMedia(image=str(tmp_path / "base.qcow2")))
    await harness.send(InsertMedia(command_id=cid(), vm_id=vm.id))
    failed = await harness.wait_event(
        lambda e: isinstance(e, VmActionFailed) and e.vm_id == vm.id)
    assert isinstance(failed, VmActionFailed) and failed.action == "vm.media_insert"
    assert failed.error.code == "unsupported_image"
    record = await harness.store.find(vm.id)
    assert record is not None and record.state == VmState.STOPPED  # its real state


async def test_an_attach_cut_short_by_a_crash_is_finished_with_one_disk(
        harness: AgentHarness, tmp_path: Path) -> None:
    """The agent dies after making the disk's file, before the domain has it: the redelivered
    command finishes the attach with that file, and no second disk appears."""
    vm = await stopped_vm(harness, tmp_path)
    await harness.shutdown()
    await harness.start(failpoints="disk_after_file=sleep:30")
    disk = VmDisk(id=str(uuid.uuid4()), name="data", size_gib=1, target="sdf")
    await change(harness, vm.id, disks=(disk,))
    await harness.send(AttachDisk(command_id=cid(), vm_id=vm.id, disk_id=disk.id))
    path = harness.vm_dir(vm.id) / f"disk-{disk.id}.qcow2"
    async with asyncio.timeout(10):
        while not path.exists():
            await asyncio.sleep(0.05)
    inode = path.stat().st_ino
    await harness.crash()
    await harness.start(failpoints="")
    record = await harness.wait_record(
        vm.id, lambda r: r is not None and r.disks[0].state == "attached", timeout_s=20)
    assert record is not None
    assert path.stat().st_ino == inode
    assert list(harness.vm_dir(vm.id).glob("disk-*.qcow2")) == [path]
    assert len(definition(vm.id).findall("./devices/disk[@device='disk']")) == 2
    # The record is written before the event is published: wait for the event, then count.
    await harness.wait_event(lambda e: isinstance(e, VmDiskAttached) and e.vm_id == vm.id)
    assert len(harness.events_of(vm.id, VmDiskAttached)) == 1
