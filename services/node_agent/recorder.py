"""Writes what really happened to VMs: record updates (compare-and-set) and their events.

Events go to JetStream (``events.event_subject``) and are awaited until the stream stored them,
so a state the API reads in the record also exists as an event for subscribers.

Every write is a compare-and-set on the revision, like ``VmStore.update``; the recorder also
remembers the revision of its own last write of each VM, so a create's successive states cost one
round trip each instead of a read and a write. A stale revision (someone else wrote since) fails
the write, and the change is then applied to a fresh read: nothing is ever overwritten.

NATS that does not answer (restarting, a leader election) is a transient failure: reads, writes
and publishes are retried with the shared backoff (``common.retry``) for up to
``LQ_TRANSIENT_RETRY_S`` before the work fails (issue 11). A write whose answer was lost is
applied again to a fresh read (compare-and-set); an event published again carries the same
``Nats-Msg-Id``, so JetStream stores it once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from nats.js import JetStreamContext

from limiquantix.common import vm_transition
from limiquantix.common.errors import NotFound
from limiquantix.common.events import Event
from limiquantix.common.kv_records import WriteAttempt
from limiquantix.common.publish import publish_event
from limiquantix.common.retry import retry_transient
from limiquantix.common.vm_store import VmStore
from limiquantix.common.vms import VmError, VmRecord, VmState
from limiquantix.node_agent import metrics

Change = Callable[[VmRecord], VmRecord]
Patch = Callable[[VmRecord], VmRecord | None]


class Recorder:
    """The node's only way to change VM records and publish events."""

    def __init__(self, js: JetStreamContext, store: VmStore, node_id: str, *,
                 retry_s: float = 120.0) -> None:
        self._js = js
        self.store = store
        self.node_id = node_id
        self._retry_s = retry_s
        self._known: dict[str, tuple[VmRecord, int]] = {}  # our last write: record, revision

    def forget(self, vm_id: str) -> None:
        """Drop what is remembered of a VM (it was deleted)."""
        self._known.pop(vm_id, None)
        metrics.forget(vm_id)

    async def find(self, vm_id: str) -> VmRecord | None:
        """The record (its revision remembered for the next write), or None."""
        try:
            self._known[vm_id] = await retry_transient(
                lambda: self.store.records.get(vm_id), what="record read",
                deadline_s=self._retry_s, vm_id=vm_id)
        except NotFound:
            self.forget(vm_id)
            return None
        return self._known[vm_id][0]

    async def _write(self, vm_id: str, change: Patch) -> VmRecord | None:
        """Compare-and-set ``change``, first on the remembered revision, then on fresh reads."""
        attempt: WriteAttempt[VmRecord] = WriteAttempt()  # a lost answer is not "no change"
        try:
            updated = await retry_transient(
                lambda: self.store.records.update(vm_id, change, known=self._known.get(vm_id),
                                                  attempt=attempt),
                what="record write", deadline_s=self._retry_s, vm_id=vm_id)
        except NotFound:
            self.forget(vm_id)
            raise
        if updated is None:
            return None
        self._known[vm_id] = (updated.after, updated.revision)
        return updated.after

    async def publish(self, event: Event) -> None:
        """Publish ``event`` on its subject and wait for JetStream's acknowledgement."""
        msg_id = uuid.uuid4().hex  # the same on every retry: stored once
        await retry_transient(lambda: publish_event(self._js, event, msg_id=msg_id),
                              what="event publish", deadline_s=self._retry_s,
                              vm_id=getattr(event, "vm_id", ""))

    async def patch(self, vm_id: str, change: Patch) -> VmRecord | None:
        """Change fields of a record without a state change (no event)."""
        return await self._write(vm_id, change)

    async def transition(
        self, vm_id: str, state: VmState, *, reason: str = "", error: VmError | None = None,
        change: Change | None = None, only_from: frozenset[VmState] | None = None,
    ) -> VmRecord | None:
        """Record ``state`` (and ``change``), then publish VmStateChanged when anything moved
        (``common.vm_transition``, on the remembered revision first).

        ``only_from``: leave the record alone unless it is in one of these states (a late
        writer must not undo a newer state). ``error`` is cleared when not given.
        """
        try:
            done = await vm_transition.transition(
                self.store.records, self._js, vm_id, state, only_from=only_from, error=error,
                change=change, reason=reason, node=self.node_id,
                known=self._known.get(vm_id), retry_s=self._retry_s)
        except NotFound:
            self.forget(vm_id)
            raise
        if done is None:
            return None
        self._known[vm_id] = (done.after, done.revision)
        metrics.observe_transition(done.before, done.after)
        return done.after
