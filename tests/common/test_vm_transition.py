"""vm_transition and publish_event on a real nats-server: the one way to change a VM's state and
the one way to publish an event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from limiquantix.common import nats_auth, nats_client, subjects, vm_transition
from limiquantix.common.errors import Conflict, NotFound
from limiquantix.common.events import Event, VmStateChanged, event_decoder
from limiquantix.common.kv_records import KvRecords
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.publish import publish_event
from limiquantix.common.vms import VmError, VmRecord, VmState

NOW = datetime(2026, 1, 1, tzinfo=UTC)
VM_ID = "0b6c2f4e-1a2b-4c3d-8e9f-0123456789ab"
BROKEN = VmError(code="boom", message="it broke")


@pytest.fixture
async def records(nc: Client) -> KvRecords[VmRecord]:
    kv = await nats_client.bucket(nc.jetstream(), subjects.VMS_BUCKET)
    records = KvRecords(kv, VmRecord, lambda key: NotFound(key))
    await records.create(VM_ID, VmRecord(
        id=VM_ID, name="web-1", node="node-a", state=VmState.STOPPED, error=BROKEN, vcpus=1,
        memory_mib=64, disk_gib=1, created_at=NOW, updated_at=NOW))
    return records


@pytest.fixture
async def events(nc: Client) -> AsyncIterator[list[Event]]:
    """Every event published from now on (a core subscription sees JetStream publishes)."""
    seen: list[Event] = []

    async def collect(msg: Msg) -> None:
        seen.append(event_decoder.decode(msg.data))

    sub = await nc.subscribe(subjects.all_events(), cb=collect)
    await nc.flush()
    yield seen
    await sub.unsubscribe()


async def settled(nc: Client, events: list[Event], count: int) -> None:
    """Wait (deadline 5 s) until ``count`` events arrived; then let any extra one show."""
    deadline = asyncio.get_running_loop().time() + 5
    while len(events) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    await nc.flush()
    await asyncio.sleep(0)  # callbacks of what the flush's round trip brought in


async def test_a_transition_writes_the_state_then_says_so(
        nc: Client, records: KvRecords[VmRecord], events: list[Event]) -> None:
    done = await vm_transition.transition(
        records, nc.jetstream(), VM_ID, VmState.STARTING,
        only_from=frozenset({VmState.STOPPED}), reason="start requested")
    assert done is not None and done.before.state == VmState.STOPPED
    stored, revision = await records.get(VM_ID)
    assert stored.state == VmState.STARTING and stored.error is None and revision == done.revision
    await settled(nc, events, 1)
    (event,) = events
    assert event == VmStateChanged(time=event.time, vm_id=VM_ID, name="web-1", node="node-a",
                                   state=VmState.STARTING, previous=VmState.STOPPED,
                                   reason="start requested")


async def test_a_record_outside_only_from_is_left_alone_or_refused(
        nc: Client, records: KvRecords[VmRecord], events: list[Event]) -> None:
    running = frozenset({VmState.RUNNING})
    assert await vm_transition.transition(records, nc.jetstream(), VM_ID, VmState.STOPPING,
                                          only_from=running) is None
    with pytest.raises(Conflict, match="stopped"):
        await vm_transition.transition(
            records, nc.jetstream(), VM_ID, VmState.STOPPING, only_from=running,
            refuse=lambda record: Conflict(f"it is {record.state}"))
    assert (await records.get(VM_ID))[0].state == VmState.STOPPED
    await settled(nc, events, 0)
    assert events == []


async def test_a_kept_error_stays_in_the_record_but_not_in_the_event(
        nc: Client, records: KvRecords[VmRecord], events: list[Event]) -> None:
    await vm_transition.transition(records, nc.jetstream(), VM_ID, VmState.DELETING,
                                   error=vm_transition.KEEP, reason="delete requested")
    assert (await records.get(VM_ID))[0].error == BROKEN
    await settled(nc, events, 1)
    assert [(e.state, e.error) for e in events if isinstance(e, VmStateChanged)] == [
        (VmState.DELETING, None)]


async def test_nothing_to_change_writes_nothing_unless_announced(
        nc: Client, records: KvRecords[VmRecord], events: list[Event]) -> None:
    js = nc.jetstream()
    _, revision = await records.get(VM_ID)
    same = await vm_transition.transition(records, js, VM_ID, VmState.STOPPED, error=BROKEN)
    assert same is None and (await records.get(VM_ID))[1] == revision
    # A user's request is announced even when the state does not move (force-stop of stopping).
    await vm_transition.transition(records, js, VM_ID, VmState.STOPPED, error=None,
                                   announce=True, reason="force-stop requested")
    await settled(nc, events, 1)
    assert [e.reason for e in events if isinstance(e, VmStateChanged)] == ["force-stop requested"]


async def test_best_effort_swallows_a_nats_failure_the_default_raises_it(
        nats_server: NatsServer) -> None:
    client = await nats.connect(**nats_server.connect_options(nats_auth.API))
    js = client.jetstream()
    await client.close()
    event = VmStateChanged(vm_id=VM_ID, state=VmState.RUNNING)
    await publish_event(js, event, best_effort=True)
    with pytest.raises(nats.errors.Error):
        await publish_event(js, event)


class _LosesFirstAnswer:
    """The bucket as a NATS leader election leaves it: the first compare-and-set is stored,
    but its answer is lost (a timeout), so the writer cannot know it landed."""

    def __init__(self, kv: object, patch_after: bytes | None = None) -> None:
        self._kv = kv
        self.lost = 0
        self._patch_after = patch_after  # another writer's change before the retry reads

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        revision: int = await self._kv.update(key, value, last=last)  # type: ignore[attr-defined]
        if not self.lost:
            self.lost += 1
            if self._patch_after is not None:
                patched = value.replace(b'"memory_mib":64', self._patch_after)
                assert patched != value
                await self._kv.update(key, patched, last=revision)  # type: ignore[attr-defined]
            raise nats.errors.TimeoutError
        return revision

    def __getattr__(self, name: str) -> object:
        return getattr(self._kv, name)


async def test_a_write_whose_answer_was_lost_is_still_announced_once(
        nc: Client, records: KvRecords[VmRecord], events: list[Event]) -> None:
    """The retry finds the state already written: by this write, so it is announced."""
    flaky = _LosesFirstAnswer(records.kv)
    records.kv = flaky  # type: ignore[assignment]
    done = await vm_transition.transition(
        records, nc.jetstream(), VM_ID, VmState.STARTING,
        only_from=frozenset({VmState.STOPPED}), reason="start requested", retry_s=5)
    assert flaky.lost == 1
    assert done is not None and done.before.state == VmState.STOPPED
    assert done.after.state == VmState.STARTING
    stored, revision = await records.get(VM_ID)
    assert stored == done.after and revision == done.revision
    await settled(nc, events, 1)
    assert [(e.state, e.previous) for e in events  # type: ignore[attr-defined]
            ] == [(VmState.STARTING, VmState.STOPPED)]
    # A state someone else wrote meanwhile is not taken for ours: nothing to do, no event.
    again = await vm_transition.transition(
        records, nc.jetstream(), VM_ID, VmState.STARTING, reason="start requested", retry_s=5)
    assert again is None
    await settled(nc, events, 1)  # a flush: an extra event would have arrived by now
    assert len(events) == 1


async def test_a_lost_answer_is_announced_even_when_another_write_patched_the_record(
        nc: Client, records: KvRecords[VmRecord], events: list[Event]) -> None:
    """Seen in CI: the record was patched (another field) between the lost write and the
    retry's read, so the stored value is no longer the written one; its state still is."""
    flaky = _LosesFirstAnswer(records.kv, patch_after=b'"memory_mib":128')
    records.kv = flaky  # type: ignore[assignment]
    done = await vm_transition.transition(
        records, nc.jetstream(), VM_ID, VmState.STARTING,
        only_from=frozenset({VmState.STOPPED}), reason="start requested", retry_s=5)
    assert flaky.lost == 1
    assert done is not None and done.before.state == VmState.STOPPED
    stored, _ = await records.get(VM_ID)
    assert stored.state == VmState.STARTING and stored.memory_mib == 128
    await settled(nc, events, 1)
    assert [(e.state, e.previous) for e in events  # type: ignore[attr-defined]
            ] == [(VmState.STARTING, VmState.STOPPED)]
