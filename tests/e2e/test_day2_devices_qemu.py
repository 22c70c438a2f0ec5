"""Day-2 devices on libvirtd + QEMU (TCG here) with a running domain: vCPU and memory hot-plug,
block resize, an extra disk attached and detached live, an ISO inserted and ejected live; each
checked through virsh (the running domain's own view), not through our records.

The disk holds no OS (SeaBIOS runs anyway): nothing here needs a guest. Run it under the
machine-wide lock: ``flock /tmp/lq-guest.lock .venv/bin/python -m pytest tests/e2e/...``.
"""

from __future__ import annotations

import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from limiquantix.common.commands import (
    AttachDisk,
    CreateVm,
    DeleteVm,
    DetachDisk,
    EjectMedia,
    InsertMedia,
    ResizeVm,
    StopVm,
)
from limiquantix.common.events import (
    Event,
    VmDeleted,
    VmDiskAttached,
    VmDiskDetached,
    VmMediaEjected,
    VmMediaInserted,
    VmResized,
)
from limiquantix.common.model import utcnow
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.vms import VmDisk, VmMedia, VmRecord, VmState
from limiquantix.node_agent.libvirt_host import domain_uuid
from tests.support.disks import make_qcow2
from tests.support.flows import unique_name
from tests.support.iso import make_iso
from tests.support.node_agent import AgentHarness, agent_settings, running_agent

pytestmark = pytest.mark.e2e

URI = "qemu:///system"
GIB = 1 << 30


def virsh(*args: str) -> str:
    """virsh, not libvirt-python: the agent under test owns this process's libvirt events."""
    done = subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def blocks(vm_id: str) -> dict[str, str]:
    """``virsh domblklist``: target -> source ('-' for an empty drive)."""
    lines = virsh("domblklist", domain_uuid(vm_id)).splitlines()[2:]
    return dict(line.split(None, 1) for line in lines if line.strip())


def live_xml(vm_id: str, *flags: str) -> ET.Element:
    return ET.fromstring(virsh("dumpxml", domain_uuid(vm_id), *flags))



@pytest.fixture
async def qemu_harness(nats_server: NatsServer, shared_dir: Path) -> AsyncIterator[AgentHarness]:
    if subprocess.run(["virsh", "-c", URI, "uri"], capture_output=True).returncode != 0:
        pytest.skip("libvirtd is not running (bash scripts/libvirtd.sh)")
    settings = agent_settings(nats_server.url, shared_dir / "node", libvirt_uri=URI,
                              virt_type="auto")
    async with running_agent(nats_server, settings) as h:
        yield h


async def change(h: AgentHarness, vm_id: str, **fields: object) -> None:
    """Write the record as the gateway does before it sends the command."""
    await h.store.update(vm_id, lambda r: msgspec.structs.replace(r, **fields))


async def event_after(h: AgentHarness, kind: type[Event], vm_id: str, seen: int) -> Event:
    """The next event of ``kind`` for the VM after the ``seen`` ones already received."""
    def newer(e: Event) -> bool:
        return isinstance(e, kind) and len(h.events_of(vm_id, kind)) > seen
    await h.wait_event(newer, timeout_s=60)
    return h.events_of(vm_id, kind)[seen]


async def test_running_domain_gets_vcpus_memory_disk_size_an_extra_disk_and_media_live(
        qemu_harness: AgentHarness, shared_dir: Path) -> None:
    h = qemu_harness
    images = shared_dir / "images"
    image = make_qcow2(images / "blank.qcow2", "256M")
    iso = make_iso(images / "tools.iso")
    images.chmod(0o755)
    now = utcnow()
    vm = VmRecord(id=str(uuid.uuid4()), name=unique_name("day2"), node=h.node_id,
                  image=str(image), vcpus=1, memory_mib=256, disk_gib=1, max_vcpus=4,
                  max_memory_mib=1024, created_at=now, updated_at=now)
    await h.store.create(vm)
    await h.send(CreateVm(command_id=uuid.uuid4().hex, vm_id=vm.id))
    await h.wait_state(vm.id, VmState.RUNNING, timeout_s=90)
    dom = domain_uuid(vm.id)
    assert "current      live           1" in virsh("vcpucount", dom)
    assert blocks(vm.id)["sde"] == "-"  # the empty media drive every domain has
    try:
        # Resize live: one vCPU and 256 MiB more (one DIMM), the disk to 2 GiB.
        await change(h, vm.id, vcpus=2, memory_mib=512, disk_gib=2)
        await h.send(ResizeVm(command_id=uuid.uuid4().hex, vm_id=vm.id))
        resized = await event_after(h, VmResized, vm.id, 0)
        assert isinstance(resized, VmResized) and resized.live
        assert "current      live           2" in virsh("vcpucount", dom)
        root = live_xml(vm.id)
        assert root.findtext("memory") == str(512 * 1024)  # KiB
        assert len(root.findall("./devices/memory[@model='dimm']")) == 1
        assert f"Capacity:       {2 * GIB}" in virsh("domblkinfo", dom, "vda")
        # The definition holds the new figures for the next start (no DIMM: base memory).
        defined = live_xml(vm.id, "--inactive")
        assert defined.find("vcpu").get("current") == "2"  # type: ignore[union-attr]
        assert defined.findtext("memory") == str(512 * 1024)
        assert not defined.findall("./devices/memory")
        # Redelivered: the running domain already matches; nothing is plugged twice.
        await h.send(ResizeVm(command_id=uuid.uuid4().hex, vm_id=vm.id))
        await event_after(h, VmResized, vm.id, 1)
        assert len(live_xml(vm.id).findall("./devices/memory[@model='dimm']")) == 1

        # An extra disk, attached live (and once, however often the command comes).
        disk = VmDisk(id=str(uuid.uuid4()), name="data", size_gib=1, target="sdf")
        await change(h, vm.id, disks=(disk,))
        for seen in range(2):
            await h.send(AttachDisk(command_id=uuid.uuid4().hex, vm_id=vm.id, disk_id=disk.id))
            attached = await event_after(h, VmDiskAttached, vm.id, seen)
            assert isinstance(attached, VmDiskAttached) and attached.live
        path = str(h.vm_dir(vm.id) / f"disk-{disk.id}.qcow2")
        assert blocks(vm.id)["sdf"] == path
        assert list(blocks(vm.id).values()).count(path) == 1
        await change(h, vm.id, disks=(msgspec.structs.replace(disk, state="detaching"),))
        await h.send(DetachDisk(command_id=uuid.uuid4().hex, vm_id=vm.id, disk_id=disk.id))
        await event_after(h, VmDiskDetached, vm.id, 0)
        assert "sdf" not in blocks(vm.id) and not Path(path).exists()
        assert "sdf" not in {t.get("dev") for t in live_xml(vm.id, "--inactive").iter("target")}

        # An ISO in the media drive, live; the seed drive keeps its ISO.
        await change(h, vm.id, media=VmMedia(image=str(iso), name="tools"))
        await h.send(InsertMedia(command_id=uuid.uuid4().hex, vm_id=vm.id))
        inserted = await event_after(h, VmMediaInserted, vm.id, 0)
        assert isinstance(inserted, VmMediaInserted) and inserted.live
        assert blocks(vm.id)["sde"] == str(iso.resolve())
        assert blocks(vm.id)["sda"].endswith("seed.iso")
        await change(h, vm.id, media=VmMedia(image=str(iso), name="tools", state="ejecting"))
        await h.send(EjectMedia(command_id=uuid.uuid4().hex, vm_id=vm.id))
        await event_after(h, VmMediaEjected, vm.id, 0)
        assert blocks(vm.id)["sde"] == "-"

        # Past the ceiling while running: the definition takes it for the next start, the
        # running domain stays as it was (the gateway refuses this; the node copes anyway).
        await change(h, vm.id, vcpus=6, max_vcpus=6)
        await h.send(ResizeVm(command_id=uuid.uuid4().hex, vm_id=vm.id))
        late = await event_after(h, VmResized, vm.id, 2)
        assert isinstance(late, VmResized) and not late.live
        assert "current      live           2" in virsh("vcpucount", dom)
        await h.send(StopVm(command_id=uuid.uuid4().hex, vm_id=vm.id, force=True))
        await h.wait_state(vm.id, VmState.STOPPED, timeout_s=30)
        assert live_xml(vm.id, "--inactive").findtext("vcpu") == "6"
    finally:
        await h.send(DeleteVm(command_id=uuid.uuid4().hex, vm_id=vm.id))
        await h.wait_event(lambda e: isinstance(e, VmDeleted) and e.vm_id == vm.id,
                           timeout_s=60)
