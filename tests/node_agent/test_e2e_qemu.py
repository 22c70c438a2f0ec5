"""The node agent on libvirtd + QEMU (TCG here): a real domain from a qcow2 overlay.

The image needs no OS (SeaBIOS runs anyway). Files live under /var/tmp because QEMU runs as
``libvirt-qemu`` and must traverse every parent directory (pytest's tmp dirs are 0700).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from limiquantix.common.commands import DeleteVm, StartVm, StopVm, UpdateCloudInit
from limiquantix.common.events import VmDeleted, VmStateChanged
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.vms import CloudInitSpec, NetworkSpec, VmState
from limiquantix.node_agent.libvirt_host import domain_uuid
from tests.support.disks import make_qcow2
from tests.support.node_agent import AgentHarness, agent_settings, running_agent

pytestmark = pytest.mark.e2e

URI = "qemu:///system"


def virsh(*args: str) -> subprocess.CompletedProcess[str]:
    """virsh, not libvirt-python: a remote connection opened here would register its socket with
    the process's libvirt event loop binding, which belongs to the agent under test."""
    return subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True)


def _libvirtd_available() -> bool:
    return virsh("uri").returncode == 0



@pytest.fixture
async def qemu_harness(nats_server: NatsServer, shared_dir: Path) -> AsyncIterator[AgentHarness]:
    if not _libvirtd_available():
        pytest.skip("libvirtd is not running (bash scripts/libvirtd.sh)")
    settings = agent_settings(nats_server.url, shared_dir / "node", libvirt_uri=URI,
                              virt_type="auto")
    async with running_agent(nats_server, settings) as h:
        yield h


def domain_xml(vm_id: str) -> ET.Element | None:
    out = virsh("dumpxml", domain_uuid(vm_id))
    return ET.fromstring(out.stdout) if out.returncode == 0 else None


def domain_state(vm_id: str) -> str:
    return virsh("domstate", domain_uuid(vm_id)).stdout.strip()


async def _banner(host: str, port: int, size: int) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    try:
        return await asyncio.wait_for(reader.readexactly(size), 10)
    finally:
        writer.close()


async def test_real_domain_with_overlay_seed_vnc_and_loopback_forward(
        qemu_harness: AgentHarness, shared_dir: Path) -> None:
    h = qemu_harness
    image = make_qcow2(shared_dir / "images" / "base.qcow2", "256M")
    (shared_dir / "images").chmod(0o755)
    vm = await h.new_vm(image, network=NetworkSpec(mode="isolated"), memory_mib=256)
    record = await h.wait_state(vm.id, VmState.RUNNING, timeout_s=90)
    vm_dir = h.vm_dir(vm.id)

    info = json.loads(subprocess.run(
        ["qemu-img", "info", "--force-share", "--output=json", str(vm_dir / "disk.qcow2")],
        check=True, capture_output=True, text=True).stdout)
    assert info["backing-filename"] == str(image)
    assert info["virtual-size"] == 1 << 30

    assert domain_state(vm.id) == "running"
    xml = domain_xml(vm.id)
    assert xml is not None
    assert xml.get("type") in {"qemu", "kvm"}
    sources = {d.find("source").get("file") for d in xml.iter("disk")  # type: ignore[union-attr]
               if d.find("source") is not None}
    assert {str(vm_dir / "disk.qcow2"), str(vm_dir / "seed.iso")} <= sources

    assert record.vnc is not None and record.vnc.host == "127.0.0.1"
    assert await _banner(record.vnc.host, record.vnc.port, 12) == b"RFB 003.008\n"

    ssh = record.forwards[0]
    _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", ssh.host_port), 5)
    writer.close()  # QEMU's restricted user network listens on loopback for the forward
    assert record.ssh_command == f"ssh -p {ssh.host_port} admin@127.0.0.1"

    # No OS answers ACPI: the stop powers the VM off after the (2 s) grace, as Nova does.
    await h.send(StopVm(command_id=uuid.uuid4().hex, vm_id=vm.id))
    stopped = await h.wait_state(vm.id, VmState.STOPPED, timeout_s=30)
    assert domain_state(vm.id) == "shut off" and stopped.vnc is None
    event = await h.wait_event(lambda e: isinstance(e, VmStateChanged) and e.vm_id == vm.id
                               and e.state == VmState.STOPPED)
    assert event.reason == "powered off after the shutdown timeout"  # type: ignore[attr-defined]

    await h.send(StartVm(command_id=uuid.uuid4().hex, vm_id=vm.id))
    restarted = await h.wait_state(vm.id, VmState.RUNNING, timeout_s=60)
    assert restarted.vnc is not None
    assert await _banner(restarted.vnc.host, restarted.vnc.port, 12) == b"RFB 003.008\n"

    await h.send(StopVm(command_id=uuid.uuid4().hex, vm_id=vm.id, force=True))
    await h.wait_state(vm.id, VmState.STOPPED, timeout_s=30)
    assert domain_state(vm.id) == "shut off"

    await h.send(DeleteVm(command_id=uuid.uuid4().hex, vm_id=vm.id))
    await h.wait_event(lambda e: isinstance(e, VmDeleted) and e.vm_id == vm.id, timeout_s=30)
    assert not vm_dir.exists()
    assert domain_xml(vm.id) is None


def _open_seed_files(vm_id: str) -> list[str]:
    """What the domain's QEMU process has open of seed.iso ("(deleted)": a replaced file)."""
    xml = domain_xml(vm_id)
    assert xml is not None
    name = xml.findtext("name")
    pid = Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip()  # written by libvirtd
    fd_dir = Path("/proc") / pid / "fd"
    targets = []
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if "seed.iso" in target:
                targets.append(target)
    return targets


async def test_new_cloud_init_reaches_a_running_domain_without_a_restart(
        qemu_harness: AgentHarness, shared_dir: Path) -> None:
    h = qemu_harness
    image = make_qcow2(shared_dir / "images" / "base.qcow2", "256M")
    (shared_dir / "images").chmod(0o755)
    vm = await h.new_vm(image, memory_mib=256)
    await h.wait_state(vm.id, VmState.RUNNING, timeout_s=90)
    assert _open_seed_files(vm.id) and not any("(deleted)" in t for t in _open_seed_files(vm.id))
    spec = CloudInitSpec(user="ops")
    await h.store.update(vm.id, lambda r: msgspec.structs.replace(  # as the gateway does
        r, cloud_init=spec, instance_id="iid-2"))
    await h.send(UpdateCloudInit(command_id=uuid.uuid4().hex, vm_id=vm.id, instance_id="iid-2",
                                 cloud_init=spec))
    async with asyncio.timeout(10):
        while True:  # the ISO was renamed over: QEMU must hold the new file, not the old
            targets = _open_seed_files(vm.id)
            if targets and not any("(deleted)" in t for t in targets):
                break
            await asyncio.sleep(0.1)
    await h.send(DeleteVm(command_id=uuid.uuid4().hex, vm_id=vm.id))
    await h.wait_event(lambda e: isinstance(e, VmDeleted) and e.vm_id == vm.id, timeout_s=30)
