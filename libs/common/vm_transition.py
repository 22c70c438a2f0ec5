"""The one way to change a VM's state: compare-and-set its record, then publish the change.

Who writes a VM's state: the gateway records the transitional state a user asked for
(``routes_vms``: ``stopping``, ``deleting``, ...), the node agent owning the VM records what
really happened (its ``Recorder``). Both call :func:`transition`, so every state change is

1. a compare-and-set on the record's revision (``KvRecords.update``): two writers never both
   pass, a lost race is re-applied to a fresh read, nothing is overwritten;
2. guarded by ``only_from``: a record in any other state is left alone (a late writer must not
   undo a newer state), or the caller's ``refuse(record)`` error is raised;
3. followed by a ``vm.state_changed`` event once the write succeeded, so a state read in the
   record also exists as an event for subscribers (SSE, the console's VM watch).

``retry_s`` (the node): NATS that does not answer is retried with the shared backoff for that
long, the write applied again to a fresh read, the event with the same ``Nats-Msg-Id``.
The table of which side writes which field is in docs/architecture.md ("VM state machine").
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
import structlog
from nats.js import JetStreamContext

from limiquantix.common.events import VmStateChanged
from limiquantix.common.kv_records import KvRecords, Updated, WriteAttempt
from limiquantix.common.publish import publish_event
from limiquantix.common.retry import retry_transient
from limiquantix.common.vms import VmError, VmRecord, VmState

log = structlog.get_logger()

T = TypeVar("T")

Change = Callable[[VmRecord], VmRecord]


class Keep(enum.Enum):
    """``error=KEEP``: leave the record's error as it is."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclasses.dataclass(frozen=True, slots=True)
class Transitioned:
    """A recorded transition: the record before and after, and the new revision."""

    before: VmRecord
    after: VmRecord
    revision: int


async def transition(
    records: KvRecords[VmRecord], js: JetStreamContext, vm_id: str, state: VmState, *,
    only_from: frozenset[VmState] | None = None, error: VmError | Keep | None = None,
    change: Change | None = None, refuse: Callable[[VmRecord], Exception] | None = None,
    reason: str = "",
    node: str | None = None, announce: bool = False,
    known: tuple[VmRecord, int] | None = None, retry_s: float | None = None,
) -> Transitioned | None:
    """Set the record's ``state`` and ``error`` (cleared unless given; ``KEEP`` keeps it), then
    ``change`` its other fields, then say so.

    None when nothing was written: the record is not in ``only_from`` (with ``refuse``: that
    error is raised instead), or there is no ``change`` and state and error are already the
    ones asked for. A ``change`` is always written (a write whose answer was lost is applied
    again to the fresh record, and the caller must not read that as a refusal). The event is
    published when
    the state moved, an ``error`` is recorded, or ``announce`` (a request the user made, even
    one that leaves the state as it was). ``node``: the event's node (default: the record's).
    ``known``: the caller's (record, revision) from its own last write, tried before a read.
    NotFound when the record does not exist; a NATS failure raises (after ``retry_s``).
    """

    def apply(record: VmRecord) -> VmRecord | None:
        if only_from is not None and record.state not in only_from:
            if refuse is not None:
                raise refuse(record)
            return None
        new = msgspec.structs.replace(
            record, state=state, error=record.error if isinstance(error, Keep) else error)
        if change is None:
            return None if (new.state, new.error) == (record.state, record.error) else new
        return change(new)

    # One write across its retries. A lost answer's write may be patched by another writer
    # before the retry reads it (seen in CI): its state and error, at or after its time, are
    # what proves it landed (a VM's state has one writer at a time).
    attempt: WriteAttempt[VmRecord] = WriteAttempt(lambda current, written: (
        (current.state, current.error) == (written.state, written.error)
        and current.updated_at >= written.updated_at))
    updated = await _retried(lambda: records.update(vm_id, apply, known=known, attempt=attempt),
                             "record write", retry_s, vm_id)
    if updated is None:
        return None
    await _announce(js, updated, error=None if isinstance(error, Keep) else error,
                    reason=reason, node=node, announce=announce, retry_s=retry_s)
    return Transitioned(before=updated.before, after=updated.after, revision=updated.revision)


async def _announce(js: JetStreamContext, updated: Updated[VmRecord], *,
                    error: VmError | None, reason: str, node: str | None, announce: bool,
                    retry_s: float | None) -> None:
    """Publish the change; ``error``: the one this transition recorded (a kept one is old
    news, not part of the event)."""
    before, after = updated.before, updated.after
    if before.state == after.state and error is None and not announce:
        return
    log.info("vm state", vm_id=after.id, state=str(after.state), previous=str(before.state),
             reason=reason, error=error.code if error else None)
    event = VmStateChanged(
        vm_id=after.id, name=after.name, node=after.node if node is None else node,
        state=after.state, previous=before.state, reason=reason, error=error,
    )
    msg_id = uuid.uuid4().hex  # the same on every retry: JetStream stores the event once
    await _retried(lambda: publish_event(js, event, msg_id=msg_id), "event publish", retry_s,
                   after.id)


async def _retried(call: Callable[[], Awaitable[T]], what: str, retry_s: float | None,
                   vm_id: str) -> T:
    if retry_s is None:
        return await call()
    return await retry_transient(call, what=what, deadline_s=retry_s, vm_id=vm_id)
