"""Follows a running guest until cloud-init has finished: ``running`` becomes ``ready``.

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
from limiquantix.node_agent import readiness
from limiquantix.node_agent.recorder import Recorder

log = structlog.get_logger()

READY_TIMEOUT_S = 900.0


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
                 timeout_s: float = READY_TIMEOUT_S) -> None:
        self._recorder = recorder
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
        if not self._enabled or self._group is None:
            return
        self.cancel(record.id)
        task = self._group.create_task(self._run(record.id, serial_log, boot))
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

    async def _run(self, vm_id: str, serial_log: Path, boot: BootMark) -> None:
        try:
            guest = await readiness.wait_for_guest_ready(
                serial_log, started_at=boot.started_at, start_offset=boot.offset,
                timeout_s=self._timeout_s)
        except readiness.GuestNotReady as exc:
            await self._not_ready(vm_id, exc)
            return
        except Exception:
            log.exception("readiness watcher failed", vm_id=vm_id)
            return
        record = await self._recorder.transition(
            vm_id, VmState.READY, reason="cloud-init finished",
            change=lambda r: msgspec.structs.replace(r, guest=guest),
            only_from=frozenset({VmState.RUNNING}),
        )
        if record is not None:
            await self._recorder.publish(VmGuestReady(
                vm_id=vm_id, name=record.name, node=record.node, guest=guest))

    async def _not_ready(self, vm_id: str, exc: Exception) -> None:
        log.warning("guest not ready", vm_id=vm_id, reason=str(exc))
        found = getattr(exc, "guest", None)
        guest = found if isinstance(found, GuestInfo) else GuestInfo()
        if not guest.cloud_init_error:
            guest = msgspec.structs.replace(guest, cloud_init_error=str(exc))

        def note(record: VmRecord) -> VmRecord | None:
            if record.state != VmState.RUNNING:
                return None
            return msgspec.structs.replace(record, guest=guest)
        await self._recorder.patch(vm_id, note)
