"""Follows a running guest until cloud-init has finished: ``running`` becomes ``ready``.

On the way it records the readiness phases (guest_phases.py): ``network`` when the log first
shows an address, ``cloud_init_done`` / ``cloud_init_failed``, then ``ssh`` once an SSH banner
answers on the VM's forward of port 22, then ``ready``. A Windows VM is not followed here (no
cloud-init on its console): its guest agent connecting makes it ready (guest_agent.py).

One watcher task per VM, owned by the agent's TaskGroup; a new boot (start, reboot) replaces the
watcher, a stop or delete cancels it. The reading of the serial log itself is the cloud-init
helper's ``readiness`` module; without it (or on the test driver) VMs stay ``running``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import msgspec
import structlog

from limiquantix.common.events import VmGuestReady
from limiquantix.common.model import Model, utcnow
from limiquantix.common.vms import GuestInfo, VmRecord, VmState
from limiquantix.node_agent import guest_phases, readiness
from limiquantix.node_agent.guest_agent import address_list, merge_addresses
from limiquantix.node_agent.recorder import Recorder

log = structlog.get_logger()

READY_TIMEOUT_S = 900.0
SSH_TIMEOUT_S = 300.0  # after cloud-init: how long to look for the SSH banner


class BootMark(Model, frozen=True, kw_only=True):
    """Where a boot begins: its time and the serial log's size just before it.

    The log is appended across boots; the offset tells readiness exactly which lines are this
    boot's (without it, readiness has to find the boot in the log by its banners).
    """

    started_at: datetime
    offset: int | None = None


def mark_boot(serial_log: Path) -> BootMark:
    """Take the mark right before starting or rebooting the domain."""
    try:
        offset = serial_log.stat().st_size
    except FileNotFoundError:
        offset = 0
    return BootMark(started_at=utcnow(), offset=offset)


class GuestWatch:
    """Starts, replaces and cancels readiness watchers."""

    def __init__(self, recorder: Recorder, *, enabled: bool,
                 timeout_s: float = READY_TIMEOUT_S, ssh_host: str = "127.0.0.1",
                 ssh_timeout_s: float = SSH_TIMEOUT_S) -> None:
        self._recorder = recorder
        self._ssh_host = ssh_host  # where the node's forwards listen (LQ_CONSOLE_HOST)
        self._ssh_timeout_s = ssh_timeout_s
        self._enabled = enabled  # the test driver has no guest and no serial log
        self._timeout_s = timeout_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None

    def bind(self, group: asyncio.TaskGroup) -> None:
        """Own future watchers by ``group`` (the agent's TaskGroup)."""
        self._group = group

    def watching(self, vm_id: str) -> bool:
        return vm_id in self._tasks

    def watch(self, record: VmRecord, serial_log: Path, boot: BootMark) -> None:
        """Follow the boot marked by ``boot`` (replaces any older watcher)."""
        if not self._enabled or self._group is None or record.os_type == "windows":
            return
        self.cancel(record.id)
        task = self._group.create_task(self._run(record, serial_log, boot))
        self._tasks[record.id] = task
        task.add_done_callback(lambda t: self._forget(record.id, t))

    def _forget(self, vm_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(vm_id) is task:
            del self._tasks[vm_id]

    def cancel(self, vm_id: str) -> None:
        task = self._tasks.pop(vm_id, None)
        if task is not None:
            task.cancel()

    def cancel_all(self) -> None:
        for vm_id in list(self._tasks):
            self.cancel(vm_id)

    async def _run(self, started: VmRecord, serial_log: Path, boot: BootMark) -> None:
        vm_id = started.id

        async def network(scan: readiness.ConsoleScan) -> None:
            await self._serial_addresses(vm_id, scan)
            await guest_phases.reach(self._recorder, vm_id, "network")

        try:
            guest = await readiness.wait_for_guest_ready(
                serial_log, started_at=boot.started_at, start_offset=boot.offset,
                timeout_s=self._timeout_s, on_network=network)
        except readiness.GuestNotReady as exc:
            await self._not_ready(vm_id, exc)
            await self._ssh_phases(started, ready=False)
            return
        except Exception:
            log.exception("readiness watcher failed", vm_id=vm_id)
            return
        now = utcnow()
        record = await self._recorder.transition(
            vm_id, VmState.READY, reason="cloud-init finished",
            change=lambda r: msgspec.structs.replace(
                r, guest=_cloud_init_done(r.guest, guest, now)),
            only_from=frozenset({VmState.RUNNING}),
        )
        if record is not None:
            await self._recorder.publish(VmGuestReady(
                vm_id=vm_id, name=record.name, node=record.node, guest=record.guest))
            if record.guest.phases.get("cloud_init_done") == now:
                await self._recorder.publish(
                    guest_phases.phase_event(record, "cloud_init_done"))
            await self._ssh_phases(record, ready=True)

    async def _serial_addresses(self, vm_id: str, scan: readiness.ConsoleScan) -> None:
        """Put the log's addresses on the record as soon as they show (merged with the
        agent's)."""
        details = scan.address_details()

        def change(record: VmRecord) -> VmRecord | None:
            merged = merge_addresses(record.guest.ip_addresses, "serial", details)
            if merged == record.guest.ip_addresses:
                return None
            return msgspec.structs.replace(record, guest=msgspec.structs.replace(
                record.guest, ip_addresses=merged, addresses=address_list(merged)))
        await self._recorder.patch(vm_id, change)

    async def _ssh_phases(self, record: VmRecord, *, ready: bool) -> None:
        """``ssh`` once the VM's SSH forward greets, then ``ready`` (when cloud-init was done);
        without an SSH forward, ``ready`` right after cloud-init."""
        endpoint = guest_phases.ssh_endpoint(record, self._ssh_host)
        if endpoint is not None:
            if not await guest_phases.wait_for_ssh(*endpoint, timeout_s=self._ssh_timeout_s):
                log.warning("no SSH banner on the VM's forward", vm_id=record.id,
                            port=endpoint[1], waited_s=self._ssh_timeout_s)
                return
            await guest_phases.reach(self._recorder, record.id, "ssh")
        if ready:
            await guest_phases.reach(self._recorder, record.id, "ready")

    async def _not_ready(self, vm_id: str, exc: Exception) -> None:
        log.warning("guest not ready", vm_id=vm_id, reason=str(exc))
        found = getattr(exc, "guest", None)
        guest = found if isinstance(found, GuestInfo) else GuestInfo()
        if not guest.cloud_init_error:
            guest = msgspec.structs.replace(guest, cloud_init_error=str(exc))
        now = utcnow()

        def note(record: VmRecord) -> VmRecord | None:
            if record.state != VmState.RUNNING:
                return None
            return msgspec.structs.replace(record, guest=_cloud_init_failed(record.guest, guest,
                                                                            now))
        updated = await self._recorder.patch(vm_id, note)
        if updated is not None and updated.guest.phases.get("cloud_init_failed") == now:
            await self._recorder.publish(guest_phases.phase_event(updated, "cloud_init_failed"))


def _serial_view(current: GuestInfo, serial: GuestInfo) -> GuestInfo:
    """``current`` (agent information, phases) with what the serial log told."""
    details = merge_addresses(current.ip_addresses, "serial", serial.ip_addresses)
    return msgspec.structs.replace(
        current, ready_at=serial.ready_at, boot_seconds=serial.boot_seconds,
        ssh_host_keys=serial.ssh_host_keys, ip_addresses=details,
        addresses=address_list(details), cloud_init_error=serial.cloud_init_error)


def _cloud_init_done(current: GuestInfo, serial: GuestInfo, now: datetime) -> GuestInfo:
    merged = _serial_view(current, serial)
    return guest_phases.with_phase(merged, "cloud_init_done", now) or merged


def _cloud_init_failed(current: GuestInfo, serial: GuestInfo, now: datetime) -> GuestInfo:
    merged = _serial_view(current, serial)
    return guest_phases.with_phase(merged, "cloud_init_failed", now) or merged
