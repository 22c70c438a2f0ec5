"""KvRecords on a real nats-server: listings create no JetStream consumers (issue 11 #1)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from nats.aio.client import Client
from nats.js.api import KeyValueConfig

from limiquantix.common import nats_client, subjects
from limiquantix.common.errors import NotFound
from limiquantix.common.kv_records import KvRecords
from limiquantix.common.vms import VmRecord

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _vm(vm_id: str) -> VmRecord:
    return VmRecord(id=vm_id, name=vm_id, vcpus=1, memory_mib=64, disk_gib=1, created_at=NOW,
                    updated_at=NOW)


async def test_more_listings_than_the_old_consumer_limit_leave_the_consumer_count_flat(
        nc: Client) -> None:
    """Listing with nats-py's keys() left one consumer per call: ~1,000 calls hit the limit."""
    js = nc.jetstream()
    kv = await nats_client.bucket(js, subjects.VMS_BUCKET)
    records = KvRecords(kv, VmRecord, lambda key: NotFound(key))
    for i in range(3):
        await records.create(f"vm-{i}", _vm(f"vm-{i}"))
    await records.purge("vm-1")  # a purged key's marker is not a record
    stream = f"KV_{subjects.VMS_BUCKET}"
    before = (await js.stream_info(stream)).state.consumer_count
    for _ in range(1200):
        listed = await records.all()
    assert sorted(r.id for r in listed) == ["vm-0", "vm-2"]
    assert (await js.stream_info(stream)).state.consumer_count == before


async def test_an_empty_bucket_lists_nothing(nc: Client) -> None:
    kv = await nats_client.bucket(nc.jetstream(), subjects.VMS_BUCKET)
    assert await KvRecords(kv, VmRecord, lambda key: NotFound(key)).all() == []


async def test_writes_conditional_on_a_revision_lose_to_a_newer_write(nc: Client) -> None:
    kv = await nats_client.bucket(nc.jetstream(), subjects.VMS_BUCKET)
    records = KvRecords(kv, VmRecord)
    first = await records.create("vm-1", _vm("vm-1"))
    assert first is not None
    second = await records.put("vm-1", _vm("vm-1"))
    assert await records.replace("vm-1", _vm("vm-1"), first) is None  # stale
    assert await records.delete("vm-1", revision=first) is False  # stale: kept
    assert await records.find("vm-1") is not None
    assert await records.replace("vm-1", _vm("vm-1"), second) is not None
    assert await records.delete("vm-1") is True and await records.find("vm-1") is None
    with pytest.raises(NotFound):
        await records.get("vm-1")  # the default NotFound when none is given


async def test_history_lists_the_kept_values_oldest_first(nc: Client) -> None:
    js = nc.jetstream()
    kv = await js.create_key_value(KeyValueConfig(bucket="lq_test_history", history=5))
    records = KvRecords(kv, VmRecord)
    assert await records.history("vm-1") == []
    for name in ("a", "b", "c"):
        await records.put("vm-1", msgspec.structs.replace(_vm("vm-1"), name=name))
    assert [r.name for r in await records.history("vm-1")] == ["a", "b", "c"]
