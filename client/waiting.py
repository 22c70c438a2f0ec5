"""The rules of ``wait_for``, shared by the sync and async clients (no I/O of its own), and
:func:`poll` / :func:`apoll`, the one polling loop of the day-2 waits.

Order matters in both: the VM's event stream is opened first and its record read second, so a
change between the two is either in the record or arrives as an event. Any event about the VM
makes the client read the record again (the record, not the event, is the truth: events of a
resumed stream may be older than the record); a quiet stream is re-read every
:data:`RESYNC_AFTER_S` as a safety net.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

from limiquantix.client.errors import VmFailed, WaitTimeout
from limiquantix.common.events import Event, VmActionFailed, VmDeleted
from limiquantix.common.vms import VmRecord, VmState

GONE = "gone"  # a target meaning "until the VM no longer exists"
RESYNC_AFTER_S = 10.0
POLL_S = 0.5
T = TypeVar("T")


def targets_of(state: str | VmState | Collection[str | VmState]) -> frozenset[str]:
    """One state or several, as plain strings (``VmState`` is a ``StrEnum``)."""
    if isinstance(state, str):
        return frozenset({str(state)})
    return frozenset(str(s) for s in state)


def reached(record: VmRecord | None, name: str, targets: Collection[str]) -> bool:
    """True once the VM is in a target state; raises when it never will be."""
    if record is None:
        if GONE in targets:
            return True
        raise VmFailed(f"{name} was deleted while waiting", code="vm_deleted",
                       hint="Create it again.")
    if record.state in targets:
        return True
    if record.state == VmState.ERROR:
        error = record.error
        raise VmFailed(f"{name} is in error: {error.message if error else 'unknown cause'}",
                       code=error.code if error else "", hint=error.hint if error else "")
    return False


def verdict(event: Event | None, vm_id: str) -> str:
    """What an event means for the wait: ``refetch``, ``gone`` or ``ignore``; a failed
    action raises (its error is the node's own code and hint)."""
    if event is None or getattr(event, "vm_id", None) != vm_id:
        return "ignore"
    match event:
        case VmDeleted():
            return GONE
        case VmActionFailed():
            raise VmFailed(f"{event.action} failed: {event.error.message}",
                           code=event.error.code, hint=event.error.hint)
    return "refetch"



def poll(fetch: Callable[[], T], done: Callable[[T], bool], *, timeout_s: float,
         timed_out: Callable[[T], str],
         error: Callable[[str], Exception] = WaitTimeout) -> T:
    """Read with ``fetch`` every :data:`POLL_S` until ``done``; ``error`` (the client's
    :class:`WaitTimeout`; the CLI passes its own) with ``timed_out(last)`` after
    ``timeout_s`` (the day-2 waits: snapshots, devices)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise error(timed_out(value))
        time.sleep(POLL_S)


async def apoll(fetch: Callable[[], Awaitable[T]], done: Callable[[T], bool], *,
                timeout_s: float, timed_out: Callable[[T], str]) -> T:
    """:func:`poll`, awaited."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await fetch()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(timed_out(value))
        await asyncio.sleep(POLL_S)
