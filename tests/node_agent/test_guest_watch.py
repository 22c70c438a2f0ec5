"""The agent's readiness wiring: a boot's serial log saying cloud-init finished makes it ready."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from limiquantix.common.events import VmGuestReady
from limiquantix.common.vms import VmState
from limiquantix.node_agent.guest_watch import BootMark, GuestWatch, mark_boot
from limiquantix.node_agent.recorder import Recorder
from tests.support.disks import make_qcow2
from tests.support.node_agent import AgentHarness

FINGERPRINTS = (
    "-----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
    "256 SHA256:AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg root@web-1 (ED25519)\n"
    "-----END SSH HOST KEY FINGERPRINTS-----\n"
)


def finished_line(at: datetime) -> str:
    return (f"Cloud-init v. 22.4.2 finished at {format_datetime(at)}. Datasource "
            "DataSourceNoCloud [seed=/dev/sr0][dsmode=net].  Up 43.10 seconds\n")


async def test_cloud_init_finished_in_the_serial_log_makes_the_vm_ready(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    recorder = Recorder(harness.js, harness.store, harness.node_id)
    watch = GuestWatch(recorder, enabled=True, timeout_s=20)
    serial = tmp_path / "serial.log"
    started_at = datetime.now(UTC) - timedelta(seconds=1)
    # An earlier boot's output stands before the mark and must not count.
    serial.write_text(FINGERPRINTS.replace("AbCd", "Old0") + finished_line(started_at))
    boot = BootMark(started_at=started_at, offset=mark_boot(serial).offset)
    with serial.open("a") as log:
        log.write("SeaBIOS (version 1.16)\nBooting from Hard Disk...\n")
    async with asyncio.TaskGroup() as group:
        watch.bind(group)
        record = await harness.store.find(vm.id)
        assert record is not None
        watch.watch(record, serial, boot)
        await asyncio.sleep(0.3)  # deliberate: no `ready` from the earlier boot's lines
        assert (await harness.store.find(vm.id)).state == VmState.RUNNING  # type: ignore[union-attr]
        with serial.open("a") as log:  # the guest boots on while we follow
            log.write(FINGERPRINTS + finished_line(datetime.now(UTC)))
        ready = await harness.wait_state(vm.id, VmState.READY, timeout_s=20)
    assert ready.guest.ready_at is not None
    assert ready.guest.ssh_host_keys and "ED25519" in ready.guest.ssh_host_keys[0]
    assert "AbCd" in ready.guest.ssh_host_keys[0]  # this boot's keys, not the old ones
    event = await harness.wait_event(lambda e: isinstance(e, VmGuestReady) and e.vm_id == vm.id)
    assert event.guest.ssh_host_keys == ready.guest.ssh_host_keys  # type: ignore[attr-defined]


async def test_a_stopped_vm_is_not_made_ready_by_a_late_watcher(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    recorder = Recorder(harness.js, harness.store, harness.node_id)
    watch = GuestWatch(recorder, enabled=True, timeout_s=20)
    serial = tmp_path / "serial.log"
    started_at = datetime.now(UTC) - timedelta(seconds=1)
    serial.write_text("")
    async with asyncio.TaskGroup() as group:
        watch.bind(group)
        record = await harness.store.find(vm.id)
        assert record is not None
        watch.watch(record, serial, BootMark(started_at=started_at, offset=0))
        assert watch.watching(vm.id)
        watch.cancel(vm.id)  # what stop and delete do
        serial.write_text(finished_line(datetime.now(UTC)))
    assert not watch.watching(vm.id)
    await asyncio.sleep(0.3)  # deliberate: nothing is recorded afterwards either
    record = await harness.store.find(vm.id)
    assert record is not None and record.state == VmState.RUNNING
