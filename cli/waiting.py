"""``--wait``: follow a VM on the event stream until it reaches a state, fails or times out.

Order matters: the stream is opened first and the record read second, so a change that lands
between the two is either in the record or arrives as an event; nothing slips through. If the
stream is silent for a while the record is read again, a safety net for a lost event, not the
driver of the status line.

A readiness ``phase`` (``--wait ssh``, docs/guest-agent.md) is waited for the same way: the
line shows the latest phase and the time since the boot began, a timeout names the phase not
reached.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from datetime import datetime
from typing import TypeVar

import msgspec

from limiquantix.cli.client import ApiClient
from limiquantix.cli.errors import ApiError, CliError, VmFailed, WaitTimeout
from limiquantix.cli.output import StatusLine
from limiquantix.cli.sizes import format_bytes, format_duration
from limiquantix.cli.sse import EventStream
from limiquantix.common.events import (
    ImageProgress,
    VmActionFailed,
    VmDeleted,
    VmGuestReady,
    VmPhaseReached,
    VmStateChanged,
)
from limiquantix.common.vms import VmRecord, VmState

RESYNC_AFTER_S = 10.0
T = TypeVar("T")
TICK_S = 1.0  # the live line's clock
GONE = "gone"
# A phase counts as reached when it, or a later one of these, is in ``guest.phases``.
PHASES_AFTER = {"ssh": ("ssh", "ready"), "ready": ("ready",),
                "cloud_init_done": ("cloud_init_done", "ssh", "ready")}


def fetch_vm(client: ApiClient, vm: str) -> VmRecord | None:
    """The record, or None once the VM no longer exists."""
    try:
        return client.api.vms.get(vm)
    except ApiError as exc:
        if exc.http_status == 404:
            return None
        raise


class VmWaiter:
    """Wait for ``targets`` (VM states, or :data:`GONE`) with a live status line."""

    def __init__(self, client: ApiClient, status: StatusLine) -> None:
        self.client = client
        self.status = status
        self._fetching = ""  # the node's image download, while the VM is being created
        self.phase = ""  # a readiness phase to wait for too (PHASES_AFTER), after a state

    def wait(self, vm_id: str, name: str, targets: Collection[str], timeout_s: float,
             stream: EventStream | None = None, *, phase: str = "") -> VmRecord | None:
        """Follow ``stream`` when given (opened before the request: nothing missed, image
        progress included), else the VM's own filtered stream, opened now. With ``phase``,
        until the VM is in ``targets`` *and* has reached that readiness phase."""
        self.phase = phase
        if stream is not None:
            return self._follow(stream, vm_id, name, targets, timeout_s)
        with EventStream(self.client, {"vm": vm_id}) as own:
            return self._follow(own, vm_id, name, targets, timeout_s)

    def _follow(self, stream: EventStream, vm_id: str, name: str, targets: Collection[str],
                timeout_s: float) -> VmRecord | None:
        deadline = time.monotonic() + timeout_s
        record = fetch_vm(self.client, vm_id)
        heard = time.monotonic()
        while True:
            if self._reached(record, name, targets):
                return record
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                state = record.state if record else GONE
                if self.phase and record is not None:
                    raise WaitTimeout(
                        f"{name} did not reach phase {self.phase} within "
                        f"{format_duration(timeout_s)}; {phase_status(record)}")
                raise WaitTimeout(
                    f"{name} is still {state} after {format_duration(timeout_s)}, "
                    f"not {' or '.join(targets)}")
            message = stream.get(timeout_s=min(remaining, TICK_S))
            if message is None:
                self.status.tick()
                if time.monotonic() - heard >= RESYNC_AFTER_S:
                    heard = time.monotonic()  # quiet stream: re-read (safety net)
                    record = fetch_vm(self.client, vm_id)
                continue
            heard = time.monotonic()
            record = self._apply(message.decoded(), record, vm_id)

    def describe(self, record: VmRecord) -> str:
        """``web-1: creating (fetching image 42% of 410.1 MiB)`` for the status line."""
        text = f"{record.name}: {record.state}"
        if record.state in (VmState.PENDING, VmState.CREATING) and self._fetching:
            text += f" ({self._fetching})"
        if self.phase and record.guest.phase:
            text += f", {phase_status(record)}"
        return text

    def _apply(self, event: object, record: VmRecord | None, vm_id: str) -> VmRecord | None:
        match event:
            case ImageProgress() if (record is not None and event.image_id == record.image
                                     and event.node in ("", record.node)):
                total = f" of {format_bytes(event.bytes_total)}" if event.bytes_total else ""
                done = (f"{event.bytes_done * 100 // event.bytes_total}%" if event.bytes_total
                        else format_bytes(event.bytes_done))
                # node "": the library importing a catalog image; else the node's cache filling
                what = "fetching image" if event.node else "downloading image"
                self._fetching = f"{what} {done}{total}"
            case VmStateChanged(vm_id=event_vm) if event_vm == vm_id and record is not None:
                if event.time < record.updated_at:
                    return record  # replayed from before the record was read: not news
                return _with_state(record, event.state, event.error, event.time)
            case VmPhaseReached(vm_id=event_vm) if event_vm == vm_id and self.phase:
                return fetch_vm(self.client, vm_id)  # the record has every phase's time
            case VmGuestReady(vm_id=event_vm) if event_vm == vm_id:
                return fetch_vm(self.client, vm_id)  # the record now has the host keys
            case VmDeleted(vm_id=event_vm) if event_vm == vm_id:
                return None
            case VmActionFailed(vm_id=event_vm) if event_vm == vm_id:
                error = event.error
                raise VmFailed(f"{event.action} failed: {error.message}", code=error.code,
                               hint=error.hint)
            case VmStateChanged() if record is None:
                return fetch_vm(self.client, vm_id)
        return record

    def _reached(self, record: VmRecord | None, name: str, targets: Collection[str]) -> bool:
        if record is None:
            self.status.update(f"{name}: {GONE}")
            if GONE in targets:
                return True
            raise VmFailed(f"{name} was deleted while waiting", code="vm_deleted",
                           hint="Create it again.")
        self.status.update(self.describe(record))
        if record.state in targets and self.phase:
            return any(p in record.guest.phases for p in PHASES_AFTER.get(self.phase,
                                                                          (self.phase,)))
        if record.state in targets:
            return True
        if record.state == VmState.ERROR:
            error = record.error
            raise VmFailed(f"{name} is in error: {error.message if error else 'unknown cause'}",
                           code=error.code if error else "", hint=error.hint if error else "")
        return False


def phase_status(record: VmRecord) -> str:
    """``phase network after 12s`` (the latest phase, seconds since the boot began)."""
    guest = record.guest
    if guest.phase is None:
        return "no phase yet"
    start = guest.phases.get("booting")
    at = guest.phases.get(guest.phase)
    if start is None or at is None:
        return f"phase {guest.phase}"
    return f"phase {guest.phase} after {format_duration((at - start).total_seconds())}"


def _with_state(record: VmRecord, state: VmState, error: object, at: datetime) -> VmRecord:
    changes: dict[str, object] = {"state": state, "updated_at": at}
    if error is not None:
        changes["error"] = error
    return msgspec.structs.replace(record, **changes)


def follow_events(stream: EventStream, timeout_s: float, step: Callable[[object], T | None],
                  *, timed_out: Callable[[], CliError], quiet_s: float = RESYNC_AFTER_S) -> T:
    """Feed every decoded event of ``stream`` to ``step`` until it answers something (None
    after ``quiet_s`` of silence: the caller's chance to re-read its record); ``timed_out()``
    is raised at the deadline. The one loop of the image, publish and device waits."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise timed_out()
        message = stream.get(timeout_s=min(remaining, quiet_s))
        result = step(message.decoded() if message is not None else None)
        if result is not None:
            return result
