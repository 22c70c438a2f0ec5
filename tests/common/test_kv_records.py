"""KvRecords on a real nats-server: listings create no JetStream consumers (issue 11 #1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import pytest
from nats.aio.client import Client

from limiquantix.common import nats_auth, nats_client, subjects
from limiquantix.common.errors import NotFound
from limiquantix.common.kv_records import KvRecords
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.vms import VmRecord

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(**nats_server.connect_options(nats_auth.API))
    await nats_client.ensure_jetstream(client.jetstream(), heartbeat_interval_s=1.0)
    yield client
    await client.drain()


def _vm(vm_id: str) -> VmRecord:
    return VmRecord(id=vm_id, name=vm_id, vcpus=1, memory_mib=64, disk_gib=1, created_at=NOW,
                    updated_at=NOW)


async def test_five_thousand_listings_leave_the_consumer_count_flat(nc: Client) -> None:
    js = nc.jetstream()
    kv = await nats_client.bucket(js, subjects.VMS_BUCKET)
    records = KvRecords(kv, VmRecord, lambda key: NotFound(key))
    for i in range(3):
        await records.create(f"vm-{i}", _vm(f"vm-{i}"))
    await records.purge("vm-1")  # a purged key's marker is not a record
    stream = f"KV_{subjects.VMS_BUCKET}"
    before = (await js.stream_info(stream)).state.consumer_count
    for _ in range(5000):
        listed = await records.all()
    assert sorted(r.id for r in listed) == ["vm-0", "vm-2"]
    assert (await js.stream_info(stream)).state.consumer_count == before


async def test_an_empty_bucket_lists_nothing(nc: Client) -> None:
    kv = await nats_client.bucket(nc.jetstream(), subjects.VMS_BUCKET)
    assert await KvRecords(kv, VmRecord, lambda key: NotFound(key)).all() == []
