"""The node agent on a real nats-server and libvirt's test driver, driven by JetStream commands."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import msgspec
import pytest

from limiquantix.common.commands import CreateVm, DeleteVm, PauseVm, ResumeVm, StartVm, StopVm
from limiquantix.common.events import (
    NodeStateChanged,
    VmActionFailed,
    VmDeleted,
    VmStateChanged,
)
from limiquantix.common.vms import NetworkSpec, VmState
from tests.support.disks import make_qcow2
from tests.support.node_agent import AgentHarness, driver_domains, find_domain


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
    # The record is written before its event is published: wait for the event too.
    await harness.wait_event(lambda e: isinstance(e, VmStateChanged) and e.vm_id == vm.id
                             and e.state == VmState.RUNNING)
    states = [e.state for e in harness.events_of(vm.id, VmStateChanged)]  # type: ignore[attr-defined]
    assert states == [VmState.CREATING, VmState.STARTING, VmState.RUNNING]
    await harness.until_acked()


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
    domains_before = len(driver_domains())
    # The same create again, as JetStream redelivers it after a crash (new message id).
    await harness.send(CreateVm(command_id=cid(), vm_id=vm.id))
    await harness.until_acked()
    after = disk.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert len(driver_domains()) == domains_before
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
    await harness.until_acked()
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
    await harness.until_acked()  # the failure is published before the ack
    failures = harness.events_of(vm.id, VmActionFailed)
    assert [f.action for f in failures] == ["vm.create"]  # type: ignore[attr-defined]


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
    await harness.until_acked()  # terminated: never redelivered


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


async def test_console_log_rpc_returns_the_serial_log_tail(
        harness: AgentHarness, tmp_path: Path) -> None:
    from limiquantix.common import node_rpc, rpc, subjects
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    # The test driver runs no QEMU: write what the serial console would have logged.
    (harness.vm_dir(vm.id) / "serial.log").write_bytes(b"SeaBIOS\n" + b"x" * 100 + b"\nlogin: ")
    subject = subjects.node_rpc(harness.node_id, node_rpc.CONSOLE_LOG)
    request = node_rpc.ConsoleLogRequest(vm_id=vm.id, max_bytes=20)
    reply = await rpc.request(harness.nc, subject, request, node_rpc.ConsoleLogReply,
                              timeout_s=5)
    assert reply.data.endswith("\nlogin: ") and len(reply.data) == 20
    assert reply.truncated and reply.size == 8 + 100 + 8


async def test_console_log_rpc_for_an_unknown_vm_is_a_typed_error(harness: AgentHarness) -> None:
    from limiquantix.common import node_rpc, rpc, subjects
    from limiquantix.common.errors import RemoteError
    subject = subjects.node_rpc(harness.node_id, node_rpc.CONSOLE_LOG)
    request = node_rpc.ConsoleLogRequest(vm_id=str(uuid.uuid4()))
    msg = await harness.nc.request(subject, node_rpc.encoder.encode(request), timeout=5)
    assert msg.headers and msg.headers[rpc.ERROR_CODE_HEADER] == "404"  # nats.py micro's way
    with pytest.raises(RemoteError) as raised:
        await rpc.request(harness.nc, subject, request, node_rpc.ConsoleLogReply, timeout_s=5)
    assert raised.value.reply.code == "not_found"


async def test_reboot_keeps_the_domain_running(harness: AgentHarness, tmp_path: Path) -> None:
    from limiquantix.common.commands import RebootVm
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    await harness.store.update(vm.id, lambda r: msgspec.structs.replace(
        r, state=VmState.REBOOTING))  # what the API records
    await harness.send(RebootVm(command_id=cid(), vm_id=vm.id))
    await harness.wait_state(vm.id, VmState.RUNNING)
    dom = find_domain(vm.id)
    assert dom is not None and dom.isActive()


async def test_update_cloud_init_rebuilds_the_seed_with_the_new_instance_id(
        harness: AgentHarness, tmp_path: Path) -> None:
    import io

    import pycdlib

    from limiquantix.common.commands import UpdateCloudInit
    from limiquantix.common.vms import CloudInitSpec
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    spec = CloudInitSpec(user="ops")
    await harness.store.update(vm.id, lambda r: msgspec.structs.replace(  # as the gateway does
        r, cloud_init=spec, instance_id="iid-2"))
    await harness.send(UpdateCloudInit(command_id=cid(), vm_id=vm.id, instance_id="iid-2",
                                       cloud_init=spec))
    async with asyncio.timeout(5):
        while True:
            iso = pycdlib.PyCdlib()
            iso.open(str(harness.vm_dir(vm.id) / "seed.iso"))
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, joliet_path="/meta-data")
            iso.close()
            if b"instance-id: iid-2" in out.getvalue():
                break
            await asyncio.sleep(0.05)


async def test_stop_of_a_vm_on_a_missing_domain_records_stopped(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    await harness.send(StopVm(command_id=cid(), vm_id=vm.id, force=True))
    record = await harness.wait_state(vm.id, VmState.STOPPED)
    assert record.error is None


async def test_many_vms_are_created_in_parallel(harness: AgentHarness, tmp_path: Path) -> None:
    image = make_qcow2(tmp_path / "base.qcow2")
    started = asyncio.get_running_loop().time()
    vms = await asyncio.gather(*(harness.new_vm(image) for _ in range(20)))
    for vm in vms:
        await harness.wait_state(vm.id, VmState.RUNNING, timeout_s=30)
    elapsed = asyncio.get_running_loop().time() - started
    print(f"20 creates (overlay + seed + define + start) in {elapsed:.2f} s")
    assert len({find_domain(vm.id).UUIDString() for vm in vms}) == 20  # type: ignore[union-attr]


async def test_periodic_reconcile_corrects_a_record_that_missed_an_event(
        harness: AgentHarness, tmp_path: Path) -> None:
    """Record says running, the domain is off and no event says so: the next pass fixes it."""
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    await harness.send(StopVm(command_id=cid(), vm_id=vm.id, force=True))
    await harness.wait_state(vm.id, VmState.STOPPED)
    await asyncio.sleep(0.3)  # deliberate: late libvirt events of the stop are handled by now
    await harness.store.update(vm.id, lambda r: msgspec.structs.replace(r, state=VmState.RUNNING))
    # Not at once (a fresh record may be a transitional state the API just wrote)...
    await asyncio.sleep(0.5)  # deliberate: an absence of change
    record = await harness.store.find(vm.id)
    assert record is not None and record.state == VmState.RUNNING
    # ...but after the ack wait (2 s here) and a reconcile interval (1 s).
    await harness.wait_state(vm.id, VmState.STOPPED, timeout_s=10)


async def test_a_failed_start_keeps_its_error_visible(harness: AgentHarness,
                                                      tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    await harness.send(StopVm(command_id=cid(), vm_id=vm.id, force=True))
    await harness.wait_state(vm.id, VmState.STOPPED)
    # Lose the VM's files: a start must fail, say why, and reconcile must not hide it.
    (harness.vm_dir(vm.id) / "domain.xml").unlink()
    (harness.vm_dir(vm.id) / "disk.qcow2").unlink()
    find_domain(vm.id).undefine()  # type: ignore[union-attr]
    await harness.send(StartVm(command_id=cid(), vm_id=vm.id))
    record = await harness.wait_record(vm.id, lambda r: r is not None and r.error is not None)
    assert record is not None and record.error is not None
    assert record.error.code == "vm_files_missing" and record.state == VmState.ERROR
    await asyncio.sleep(2.5)  # deliberate: an absence of change over two reconcile passes (1 s)
    record = await harness.store.find(vm.id)
    assert record is not None and record.state == VmState.ERROR
    assert record.error is not None and record.error.code == "vm_files_missing"


async def test_iso_image_boots_the_iso_before_a_blank_disk(harness: AgentHarness,
                                                           tmp_path: Path) -> None:
    import json
    import subprocess
    import xml.etree.ElementTree as ET

    from limiquantix.node_agent.seed.iso import build_seed_iso
    iso = tmp_path / "installer.iso"
    iso.write_bytes(build_seed_iso({"README": b"an installer"}))
    vm = await harness.new_vm(iso, disk_gib=3)
    await harness.wait_state(vm.id, VmState.RUNNING)
    disk = harness.vm_dir(vm.id) / "disk.qcow2"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(disk)],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["virtual-size"] == 3 << 30 and "backing-filename" not in info
    dom = find_domain(vm.id)
    assert dom is not None
    boot = {d.find("source").get("file"): d.find("boot").get("order")  # type: ignore[union-attr]
            for d in ET.fromstring(dom.XMLDesc(0)).iter("disk") if d.find("boot") is not None}
    assert boot == {str(iso): "1", str(disk): "2"}


async def test_long_work_is_kept_alive_and_never_redelivered(harness: AgentHarness,
                                                             tmp_path: Path) -> None:
    """Work longer than the ack wait (2 s) sends in-progress acks: JetStream waits for it.
    Each of the two commands works 3.5 s: past the ack wait by over one in-progress period."""
    from structlog.testing import capture_logs

    from limiquantix.common import subjects
    await harness.shutdown()
    with capture_logs() as logs:
        await harness.start(failpoints="before_ack=sleep:3.5")
        vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
        # A second command for the same VM waits behind the first (order per VM) all along.
        await harness.send(PauseVm(command_id=cid(), vm_id=vm.id))
        await harness.wait_state(vm.id, VmState.PAUSED, timeout_s=20)
        await harness.until_acked(timeout_s=15)
    info = await harness.js.consumer_info(subjects.COMMANDS_STREAM,
                                          subjects.node_consumer(harness.node_id))
    assert info.config.ack_wait == 2.0
    assert not [e for e in logs if "redelivered" in e["event"]]


async def test_delete_asked_during_a_create_leaves_nothing_behind(harness: AgentHarness,
                                                                  tmp_path: Path) -> None:
    await harness.shutdown()
    await harness.start(failpoints="after_overlay=sleep:1")
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.CREATING)
    # What the API does on DELETE: record the transitional state, then queue the command.
    await harness.store.update(vm.id, lambda r: msgspec.structs.replace(r, state=VmState.DELETING))
    await harness.send(DeleteVm(command_id=cid(), vm_id=vm.id))
    await harness.wait_event(lambda e: isinstance(e, VmDeleted) and e.vm_id == vm.id)
    assert not harness.vm_dir(vm.id).exists()
    assert find_domain(vm.id) is None
    states = [e.state for e in harness.events_of(vm.id, VmStateChanged)]  # type: ignore[attr-defined]
    assert VmState.RUNNING not in states
