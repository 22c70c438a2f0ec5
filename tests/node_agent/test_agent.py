"""The node agent on a real nats-server and libvirt's test driver, driven by JetStream commands."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from limiquantix.common.commands import CreateVm, DeleteVm, PauseVm, ResumeVm, StartVm, StopVm
from limiquantix.common.events import (
    NodeStateChanged,
    VmActionFailed,
    VmDeleted,
    VmStateChanged,
)
from limiquantix.common.vms import NetworkSpec, VmState
from tests.node_agent.conftest import AgentHarness, find_domain, make_qcow2


def cid() -> str:
    return uuid.uuid4().hex


async def test_create_makes_overlay_seed_and_running_domain(
        harness: AgentHarness, tmp_path: Path) -> None:
    image = make_qcow2(tmp_path / "base.qcow2")
    vm = await harness.new_vm(image)
    record = await harness.wait_state(vm.id, VmState.RUNNING)
    vm_dir = harness.vm_dir(vm.id)
    assert sorted(p.name for p in vm_dir.iterdir()) == ["disk.qcow2", "domain.xml", "seed.iso"]
    assert record.serial_log == str(vm_dir / "serial.log")
    dom = find_domain(vm.id)
    assert dom is not None and dom.isActive() and dom.name() == f"lq-{vm.name}"
    states = [e.state for e in harness.events_of(vm.id, VmStateChanged)]  # type: ignore[attr-defined]
    assert states == [VmState.CREATING, VmState.STARTING, VmState.RUNNING]
    await asyncio.sleep(0.5)
    assert await harness.pending_commands() == 0


async def test_stop_then_start_records_each_outcome(harness: AgentHarness, tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    await harness.send(StopVm(command_id=cid(), vm_id=vm.id))
    await harness.wait_state(vm.id, VmState.STOPPED)
    dom = find_domain(vm.id)
    assert dom is not None and not dom.isActive()
    await harness.send(StartVm(command_id=cid(), vm_id=vm.id))
    await harness.wait_state(vm.id, VmState.RUNNING)
    assert dom.isActive()


async def test_pause_and_resume(harness: AgentHarness, tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    await harness.send(PauseVm(command_id=cid(), vm_id=vm.id))
    await harness.wait_state(vm.id, VmState.PAUSED)
    dom = find_domain(vm.id)
    assert dom is not None and dom.state()[0] == 3  # VIR_DOMAIN_PAUSED
    await harness.send(ResumeVm(command_id=cid(), vm_id=vm.id))
    await harness.wait_state(vm.id, VmState.RUNNING)
    assert dom.state()[0] == 1  # VIR_DOMAIN_RUNNING


async def test_delete_removes_domain_files_and_record(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    await harness.send(DeleteVm(command_id=cid(), vm_id=vm.id))
    await harness.wait_event(lambda e: isinstance(e, VmDeleted) and e.vm_id == vm.id)
    assert await harness.store.find(vm.id) is None
    assert not harness.vm_dir(vm.id).exists()
    assert find_domain(vm.id) is None
    assert await harness.store.id_for_name(vm.name) is None


async def test_redelivered_create_makes_no_second_disk_or_domain(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    disk = harness.vm_dir(vm.id) / "disk.qcow2"
    before = disk.stat()
    domains_before = len(find_domain.__globals__["test_domains"]())
    # The same create again, as JetStream redelivers it after a crash (new message id).
    await harness.send(CreateVm(command_id=cid(), vm_id=vm.id, vm=vm))
    await asyncio.sleep(1.0)
    assert await harness.pending_commands() == 0
    after = disk.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert len(find_domain.__globals__["test_domains"]()) == domains_before
    record = await harness.store.find(vm.id)
    assert record is not None and record.state == VmState.RUNNING


async def test_agent_cancelled_before_ack_is_finished_by_the_next_one(
        harness: AgentHarness, tmp_path: Path) -> None:
    """The work is done but not acked when the agent dies: the next agent acks, makes nothing."""
    await harness.shutdown()
    await harness.start(failpoints="before_ack=sleep:30")
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    assert await harness.pending_commands() == 1
    disk_inode = (harness.vm_dir(vm.id) / "disk.qcow2").stat().st_ino
    await harness.crash()
    await harness.start(failpoints="")
    async with asyncio.timeout(10):
        while await harness.pending_commands():
            await asyncio.sleep(0.1)
    assert (harness.vm_dir(vm.id) / "disk.qcow2").stat().st_ino == disk_inode
    record = await harness.store.find(vm.id)
    assert record is not None and record.state == VmState.RUNNING and record.error is None
    dom = find_domain(vm.id)
    assert dom is not None and dom.isActive()


async def test_unknown_image_path_is_an_error_and_the_command_is_acked(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await harness.new_vm(tmp_path / "missing.qcow2")
    record = await harness.wait_state(vm.id, VmState.ERROR)
    assert record.error is not None and record.error.code == "image_not_found"
    assert record.error.hint
    await asyncio.sleep(0.3)
    failures = harness.events_of(vm.id, VmActionFailed)
    assert [f.action for f in failures] == ["vm.create"]  # type: ignore[attr-defined]
    assert await harness.pending_commands() == 0


async def test_image_with_backing_file_is_refused(harness: AgentHarness, tmp_path: Path) -> None:
    base = make_qcow2(tmp_path / "base.qcow2")
    sneaky = tmp_path / "sneaky.qcow2"
    import subprocess
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base),
                    str(sneaky)], check=True)
    vm = await harness.new_vm(sneaky)
    record = await harness.wait_state(vm.id, VmState.ERROR)
    assert record.error is not None and record.error.code == "unsafe_image"
    assert find_domain(vm.id) is None


async def test_invalid_command_is_recorded_and_not_redelivered(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    from limiquantix.common import subjects
    await harness.js.publish(subjects.node_commands(harness.node_id),
                             b'{"type": "vm.teleport", "command_id": "x", "vm_id": "%s"}'
                             % vm.id.encode())
    record = await harness.wait_record(vm.id, lambda r: r is not None and r.error is not None)
    assert record is not None and record.error is not None
    assert record.error.code == "invalid_command"
    assert record.state == VmState.RUNNING  # the domain's real state is known
    await asyncio.sleep(0.3)
    assert await harness.pending_commands() == 0


async def test_isolated_network_binds_ssh_forward_and_command(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"),
                              network=NetworkSpec(mode="isolated"))
    record = await harness.wait_state(vm.id, VmState.RUNNING)
    assert len(record.forwards) == 1
    ssh = record.forwards[0]
    assert ssh.guest_port == 22 and ssh.host_port > 0
    assert record.ssh_command == f"ssh -p {ssh.host_port} admin@127.0.0.1"
    xml = (harness.vm_dir(vm.id) / "domain.xml").read_text()
    assert f"restrict=on,hostfwd=tcp:127.0.0.1:{ssh.host_port}-:22" in xml


async def test_guest_power_off_outside_limiquantix_is_recorded_as_stopped(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    dom = find_domain(vm.id)
    assert dom is not None
    await asyncio.to_thread(dom.destroy)  # as `virsh destroy` would
    record = await harness.wait_state(vm.id, VmState.STOPPED)
    assert record.vnc is None


async def test_lost_domain_is_redefined_from_its_files_on_restart(
        harness: AgentHarness, tmp_path: Path) -> None:
    """The test driver forgets domains when the agent restarts; the agent brings them back."""
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    await harness.shutdown()
    # The driver's state lived in the agent's connection: the domain is gone with it.
    assert find_domain(vm.id) is None
    await harness.start()
    dom = find_domain(vm.id)
    assert dom is not None and dom.isActive()
    record = await harness.store.find(vm.id)
    assert record is not None and record.state == VmState.RUNNING


async def test_clean_stop_withdraws_heartbeat_and_announces_offline(
        harness: AgentHarness) -> None:
    from limiquantix.common import nats_client, subjects
    nodes = await nats_client.bucket(harness.js, subjects.NODES_BUCKET)
    entry = await nodes.get(harness.node_id)
    assert entry.value
    await harness.shutdown()
    await harness.wait_event(lambda e: isinstance(e, NodeStateChanged) and not e.online)
    try:
        entry = await nodes.get(harness.node_id)
        gone = not entry.value
    except Exception:
        gone = True
    assert gone
    online = [e.online for e in harness.events if isinstance(e, NodeStateChanged)
              and e.node == harness.node_id]
    assert online == [True, False]
