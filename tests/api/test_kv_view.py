"""The gateway's VM and node views (on common.kv_view, tested in tests/common): the name and
allocation indexes, its own writes applied at once, revisions decide, liveness by TTL."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from nats.js import JetStreamContext

from limiquantix.api.kv_view import NodeView, VmView
from limiquantix.common import subjects
from limiquantix.common.nodes import NodeStatus, node_encoder
from limiquantix.common.vm_store import encode_record
from limiquantix.common.vms import VmRecord, VmState
from tests.support.api_gateway import Gateway
from tests.support.waits import eventually

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def record(vm_id: str, name: str, state: VmState = VmState.PENDING) -> VmRecord:
    return VmRecord(id=vm_id, name=name, state=state, image="/i", vcpus=1, memory_mib=64,
                    disk_gib=1, created_at=NOW, updated_at=NOW)


async def started_view(js: JetStreamContext) -> VmView:
    view = VmView(js, subjects.VMS_BUCKET)
    await view.start()
    return view


async def test_a_view_loads_existing_entries_then_follows_changes(gw: Gateway) -> None:
    kv = await gw.js.key_value(subjects.VMS_BUCKET)
    await kv.put("v1", encode_record(record("v1", "one")))
    view = await started_view(gw.js)
    try:
        assert view.get("v1") is not None and view.by_name("one") is not None
        one = view.get("v1")
        assert one is not None
        assert view.allocations()[one.node] == (one.vcpus, one.memory_mib)
        await kv.put("v2", encode_record(record("v2", "two", VmState.RUNNING)))
        await eventually(lambda: view.by_name("two") is not None)
        assert view.allocations()[one.node] == (2 * one.vcpus, 2 * one.memory_mib)
        await kv.purge("v1")
        await eventually(lambda: view.get("v1") is None)
        assert view.allocations()[one.node] == (one.vcpus, one.memory_mib)
        assert view.by_name("one") is None
        await kv.delete("v2")
        await eventually(lambda: view.values() == [])
    finally:
        await view.stop()


async def test_an_older_revision_never_replaces_a_newer_one(gw: Gateway) -> None:
    view = await started_view(gw.js)
    try:
        view.put(record("v1", "one", VmState.RUNNING), 10)
        view._apply("v1", record("v1", "one", VmState.PENDING), 9, time.time())
        assert view.get("v1") == record("v1", "one", VmState.RUNNING)
        view.put_unrevisioned(record("v1", "one", VmState.STOPPING))
        assert view.get("v1") == record("v1", "one", VmState.STOPPING)
        view._apply("v1", record("v1", "one", VmState.STOPPED), 11, time.time())
        assert view.get("v1") == record("v1", "one", VmState.STOPPED)
    finally:
        await view.stop()


async def test_a_reservation_is_released_but_a_written_record_is_not(gw: Gateway) -> None:
    view = await started_view(gw.js)
    try:
        view.reserve(record("v1", "one"))
        assert view.by_name("one") is not None
        view.release("v1")
        assert view.get("v1") is None and view.by_name("one") is None
        view.reserve(record("v2", "two"))
        view.put(record("v2", "two"), 3)
        view.release("v2")
        assert view.get("v2") is not None
    finally:
        await view.stop()


async def test_nodes_are_live_only_within_the_ttl(gw: Gateway) -> None:
    kv = await (await gw.as_node("n1")).jetstream().key_value(subjects.NODES_BUCKET)
    await kv.put("n1", node_encoder.encode(NodeStatus(id="n1", vcpus=1, memory_mib=1,
                                                      heartbeat_at=NOW)))
    view = NodeView(gw.js, subjects.NODES_BUCKET, ttl_s=3.0)
    await view.start()
    try:
        now = time.time()
        assert [n.id for n in view.live(now)] == ["n1"]
        assert view.live_node("n1", now + 2.5) is not None
        assert view.live(now + 3.5) == [] and view.live_node("n1", now + 3.5) is None
        assert view.last_seen("n1") is not None
    finally:
        await view.stop()
