"""Snapshots and clones on libvirtd + QEMU (TCG), a blank qcow2 (no guest OS is needed for the
mechanics): memory and live disk-only snapshots, a crash mid-snapshot, revert, clones at a
snapshot and of the running disk, delete; a template's linked clones (overlays over its disk)
running side by side; linked clones of a running VM over its snapshot's frozen base. Run
under ``flock /tmp/lq-guest.lock``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from limiquantix.common.commands import (
    CreateSnapshot,
    DeleteSnapshot,
    DeleteVm,
    RevertSnapshot,
    StopVm,
)
from limiquantix.common.events import VmCloned, VmDeleted
from limiquantix.common.model import utcnow
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.vms import NetworkSpec, SnapshotState, VmRecord, VmSnapshot, VmState
from tests.node_agent.test_snapshots import _clone, _mark, _snapshot, _wait_snapshot
from tests.support.disks import make_qcow2
from tests.support.node_agent import AgentHarness, agent_settings, find_domain, running_agent

pytestmark = pytest.mark.e2e

URI = "qemu:///system"


def _disk_snapshots(disk: Path) -> list[str]:
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(disk)],
                         capture_output=True, text=True, check=True).stdout
    return [s["name"] for s in json.loads(out).get("snapshots", [])]



async def _running_vm(h: AgentHarness, shared_dir: Path) -> tuple[VmRecord, Path]:
    """A running domain on a 256 MiB image QEMU (user libvirt-qemu) can read; with the
    image."""
    (shared_dir / "images").mkdir()
    image = make_qcow2(shared_dir / "images" / "base.qcow2", "256M")
    (shared_dir / "images").chmod(0o755)
    vm = await h.new_vm(image, network=NetworkSpec(mode="isolated"), memory_mib=256)
    await h.wait_state(vm.id, VmState.RUNNING, timeout_s=90)
    return vm, image


@pytest.fixture
async def qemu_harness(nats_server: NatsServer, shared_dir: Path) -> AsyncIterator[AgentHarness]:
    if subprocess.run(["virsh", "-c", URI, "uri"], capture_output=True).returncode != 0:
        pytest.skip("libvirtd is not running (bash scripts/libvirtd.sh)")
    settings = agent_settings(nats_server.url, shared_dir / "node", libvirt_uri=URI,
                              virt_type="auto", failpoints="snapshot_taken=sleep:30")
    async with running_agent(nats_server, settings) as h:
        yield h


async def test_real_snapshots_revert_clone_and_delete(qemu_harness: AgentHarness,
                                                      shared_dir: Path) -> None:
    h = qemu_harness
    vm, _ = await _running_vm(h, shared_dir)
    disk = h.vm_dir(vm.id) / "disk.qcow2"
    clones: list[str] = []
    try:
        # A live disk-only snapshot (QEMU takes it, libvirt gets REDEFINE); the agent dies
        # after QEMU took it: the next agent records it, and QEMU holds exactly one.
        live = await _snapshot(h, vm, "live-disk")
        async with asyncio.timeout(30):
            while live.id not in _disk_snapshots(disk):
                await asyncio.sleep(0.1)
        await h.crash()
        await h.start(failpoints="")
        record = await _wait_snapshot(h, vm.id, live.id, SnapshotState.READY)
        taken = record.snapshots[0]
        assert taken.vm_state == "running" and not taken.memory
        assert _disk_snapshots(disk) == [live.id]

        mem = await _snapshot(h, vm, "with-memory", memory=True)
        record = await _wait_snapshot(h, vm.id, mem.id, SnapshotState.READY)
        with_memory = next(s for s in record.snapshots if s.id == mem.id)
        assert with_memory.memory and (with_memory.size_bytes or 0) > 0
        assert _disk_snapshots(disk) == [live.id, mem.id]

        # Memory revert: the domain keeps running, no reboot.
        await _mark(h, vm.id, mem.id, SnapshotState.REVERTING)
        await h.send(RevertSnapshot(command_id=uuid.uuid4().hex, vm_id=vm.id,
                                    snapshot_id=mem.id))
        record = await _wait_snapshot(h, vm.id, mem.id, SnapshotState.READY)
        assert record.state == VmState.RUNNING and record.vnc is not None
        # Disk-only revert of a running VM: stopped, disk restored, booted again.
        await _mark(h, vm.id, live.id, SnapshotState.REVERTING)
        await h.send(RevertSnapshot(command_id=uuid.uuid4().hex, vm_id=vm.id,
                                    snapshot_id=live.id))
        record = await _wait_snapshot(h, vm.id, live.id, SnapshotState.READY)
        assert record.state == VmState.RUNNING

        at_snapshot = await _clone(h, record, f"c{uuid.uuid4().hex[:8]}", snapshot_id=mem.id,
                                   linked=False)
        clones.append(at_snapshot.id)
        await h.wait_state(at_snapshot.id, VmState.RUNNING, timeout_s=90)
        of_running = await _clone(h, record, f"c{uuid.uuid4().hex[:8]}", linked=False)
        clones.append(of_running.id)
        await h.wait_state(of_running.id, VmState.RUNNING, timeout_s=90)
        assert _disk_snapshots(disk) == [live.id, mem.id]  # the temporary one is gone

        for snap in (live, mem):
            await _mark(h, vm.id, snap.id, SnapshotState.DELETING)
            await h.send(DeleteSnapshot(command_id=uuid.uuid4().hex, vm_id=vm.id,
                                        snapshot_id=snap.id))
            await _wait_snapshot(h, vm.id, snap.id, None)
        assert _disk_snapshots(disk) == []
    finally:
        for vm_id in (*clones, vm.id):
            await h.send(DeleteVm(command_id=uuid.uuid4().hex, vm_id=vm_id))
            await h.wait_event(lambda e, i=vm_id: isinstance(e, VmDeleted) and e.vm_id == i,
                               timeout_s=60)


def _backing_chain(disk: Path) -> list[str]:
    out = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json",
                          str(disk)], capture_output=True, text=True, check=True).stdout
    return [str(Path(layer["filename"]).resolve()) for layer in json.loads(out)]


async def test_linked_clones_of_a_template_run_as_overlays_over_its_disk(
        qemu_harness: AgentHarness, shared_dir: Path) -> None:
    """Two linked clones of one template run at once on real QEMU, each an overlay whose
    backing file is the template's disk (itself over the image), made in milliseconds."""
    h = qemu_harness
    vm, image = await _running_vm(h, shared_dir)
    clones: list[str] = []
    try:
        await h.send(StopVm(command_id=uuid.uuid4().hex, vm_id=vm.id, force=True))
        await h.wait_state(vm.id, VmState.STOPPED, timeout_s=60)
        template = await h.store.update(vm.id, lambda r: msgspec.structs.replace(
            r, template=True))
        assert template is not None
        template_disk = (h.vm_dir(vm.id) / "disk.qcow2").resolve()
        for _ in range(2):
            clone = await _clone(h, template, f"l{uuid.uuid4().hex[:8]}")
            clones.append(clone.id)
        for clone_id in clones:
            await h.wait_state(clone_id, VmState.RUNNING, timeout_s=90)
            disk = h.vm_dir(clone_id) / "disk.qcow2"
            assert _backing_chain(disk) == [str(disk.resolve()), str(template_disk),
                                            str(image.resolve())]
            dom = find_domain(clone_id, URI)
            assert dom is not None and dom.isActive()
            made = [e for e in h.events_of(clone_id, VmCloned) if isinstance(e, VmCloned)]
            assert len(made) == 1 and made[0].linked and made[0].seconds < 1.0
            print(f"linked clone disk made in {made[0].seconds * 1000:.0f} ms, "
                  f"{made[0].disk_bytes} bytes")
        assert _disk_snapshots(template_disk) == []  # the base itself is untouched
    finally:
        for vm_id in (*clones, vm.id):
            await h.send(DeleteVm(command_id=uuid.uuid4().hex, vm_id=vm_id))
            await h.wait_event(lambda e, i=vm_id: isinstance(e, VmDeleted) and e.vm_id == i,
                               timeout_s=60)


def _guest_write(disk: Path, vm_id: str, pattern: str, offset: str) -> None:
    """Write through the running QEMU into its disk (as the guest would), on the device's own
    block backend (HMP qemu-io on the device: it holds the write permission), then read it in
    ``disk`` from outside."""
    import libvirt_qemu

    dom = find_domain(vm_id, URI)
    assert dom is not None and dom.isActive()
    alias = ET.fromstring(dom.XMLDesc(0)).find("./devices/disk[@device='disk']/alias")
    assert alias is not None
    device = f"/machine/peripheral/{alias.get('name')}/virtio-backend"  # the virtio-blk inside
    for command in (f"write -P {pattern} {offset} 1M", "flush"):  # flush: qcow2's metadata
        # 1: HMP; -d: the argument is a device (QOM path). qemu-io prints its report on
        # QEMU's stdout: the monitor answers only errors.
        out = libvirt_qemu.qemuMonitorCommand(dom, f'qemu-io -d {device} "{command}"', 1)
        assert not out.strip(), out
    assert _reads_shared(disk, pattern, offset)


def _reads_shared(disk: Path, pattern: str, offset: str) -> bool:
    out = subprocess.run(["qemu-io", "-r", "-U", "-c", f"read -P {pattern} {offset} 1M",
                          str(disk)], capture_output=True, text=True)
    return out.returncode == 0 and "Pattern verification failed" not in out.stdout


async def test_linked_clones_of_a_running_vm_share_its_snapshots_frozen_base(
        qemu_harness: AgentHarness, shared_dir: Path) -> None:
    """A linked clone of a RUNNING domain, no snapshot chosen: the gateway's snapshot
    (``creating``) is taken live by the clone's create, frozen once into bases/<id>.qcow2
    (over the image), and the clone is an overlay on it; the source runs and writes on; a
    second clone at that snapshot reuses the base in milliseconds; the snapshot is not deleted
    while they exist, and goes with its base once they are gone."""
    h = qemu_harness
    await h.shutdown()  # without the fixture's failpoint: the times below are the real ones
    await h.start(failpoints="")
    vm, image = await _running_vm(h, shared_dir)
    disk = h.vm_dir(vm.id) / "disk.qcow2"
    clones: list[str] = []
    try:
        _guest_write(disk, vm.id, "0x5a", "4M")
        # As the gateway does for `lq vm clone SRC NEW --linked`: the snapshot listed, the
        # clone's record at it, both commands queued (the clone's may run first).
        snap = VmSnapshot(id=str(uuid.uuid4()), name="clone-x", created_at=utcnow())
        await h.store.update(vm.id, lambda r: msgspec.structs.replace(r, snapshots=(snap,)))
        first = await _clone(h, vm, f"l{uuid.uuid4().hex[:8]}", snapshot_id=snap.id)
        clones.append(first.id)
        await h.send(CreateSnapshot(command_id=uuid.uuid4().hex, vm_id=vm.id,
                                    snapshot_id=snap.id))
        await h.wait_state(first.id, VmState.RUNNING, timeout_s=90)
        record = await _wait_snapshot(h, vm.id, snap.id, SnapshotState.READY)
        assert record.snapshots[0].vm_state == "running"
        _guest_write(disk, vm.id, "0x66", "4M")  # the source writes on, after the snapshot
        second = await _clone(h, record, f"l{uuid.uuid4().hex[:8]}", snapshot_id=snap.id)
        clones.append(second.id)
        await h.wait_state(second.id, VmState.RUNNING, timeout_s=90)

        base = (h.vm_dir(vm.id) / "bases" / f"{snap.id}.qcow2").resolve()
        made = []
        for clone_id in clones:
            clone_disk = h.vm_dir(clone_id) / "disk.qcow2"
            assert _backing_chain(clone_disk) == [str(clone_disk.resolve()), str(base),
                                                  str(image.resolve())]
            assert _reads_shared(clone_disk, "0x5a", "4M")  # the snapshot's state
            dom = find_domain(clone_id, URI)
            assert dom is not None and dom.isActive()
            [event] = [e for e in h.events_of(clone_id, VmCloned) if isinstance(e, VmCloned)]
            made.append(event)
            print(f"linked clone of a running VM: {event.seconds * 1000:.0f} ms, disk "
                  f"{event.disk_bytes} bytes, base made: {event.base_made} "
                  f"({event.base_bytes} bytes)")
        assert [e.base_made for e in made] == [True, False]
        assert made[1].seconds < 1.0 and all(e.disk_bytes < 1 << 20 for e in made)
        assert 0 < made[0].base_bytes < 8 << 20  # the VM's own clusters, not the image's
        assert base.stat().st_mode & 0o222 == 0
        source_dom = find_domain(vm.id, URI)
        assert source_dom is not None and source_dom.isActive()  # ran all along
        _guest_write(disk, vm.id, "0x77", "8M")
        assert _reads_shared(disk, "0x66", "4M") and _reads_shared(disk, "0x77", "8M")
        assert _reads_shared(base, "0x5a", "4M")
        assert _disk_snapshots(disk) == [snap.id]

        await _mark(h, vm.id, snap.id, SnapshotState.DELETING)
        await h.send(DeleteSnapshot(command_id=uuid.uuid4().hex, vm_id=vm.id,
                                    snapshot_id=snap.id))
        refused = await h.wait_record(vm.id, lambda r: bool(
            r and r.snapshots and r.snapshots[0].state == SnapshotState.READY
            and r.snapshots[0].error))
        assert refused is not None and "linked clone" in refused.snapshots[0].error
        assert base.exists() and _disk_snapshots(disk) == [snap.id]
        for clone_id in list(clones):
            await h.send(DeleteVm(command_id=uuid.uuid4().hex, vm_id=clone_id))
            await h.wait_event(lambda e, i=clone_id: isinstance(e, VmDeleted)
                               and e.vm_id == i, timeout_s=60)
            clones.remove(clone_id)
        await _mark(h, vm.id, snap.id, SnapshotState.DELETING)
        await h.send(DeleteSnapshot(command_id=uuid.uuid4().hex, vm_id=vm.id,
                                    snapshot_id=snap.id))
        await _wait_snapshot(h, vm.id, snap.id, None)
        assert not base.exists() and _disk_snapshots(disk) == []
    finally:
        for vm_id in (*clones, vm.id):
            await h.send(DeleteVm(command_id=uuid.uuid4().hex, vm_id=vm_id))
            await h.wait_event(lambda e, i=vm_id: isinstance(e, VmDeleted) and e.vm_id == i,
                               timeout_s=60)
