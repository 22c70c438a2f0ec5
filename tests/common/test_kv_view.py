"""The one watched KV view on a real nats-server: the content at start, then every update,
delete, purge, TTL expiry (with and without the server's delete markers) and a NATS restart."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from limiquantix.common import nats_auth
from limiquantix.common.kv_view import KvView
from limiquantix.common.nats_server import NatsServer
from tests.support.waits import eventually

BUCKET = "lq_test_view"


_decode = msgspec.json.Decoder(int).decode  # views decode with msgspec, as the services do


class EvenView(KvView[int]):
    """A view of part of a bucket, with a derived index (as the node's record view has)."""

    def __init__(self, nc: Client) -> None:
        super().__init__(nc.jetstream(), BUCKET, _decode)
        self.changes: list[tuple[str, int | None, int | None]] = []

    def _keep(self, key: str, value: int) -> bool:
        return value % 2 == 0

    def _on_change(self, key: str, old: int | None, new: int | None) -> None:
        self.changes.append((key, old, new))


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """The root fixture's identity, reconnecting quickly (a test restarts NATS), no streams."""
    client = await nats.connect(**nats_server.connect_options(nats_auth.API),
                                reconnect_time_wait=0.1, max_reconnect_attempts=-1)
    yield client
    await client.close()


async def _bucket(nc: Client, **config: float) -> KeyValue:
    return await nc.jetstream().create_key_value(KeyValueConfig(bucket=BUCKET, history=1,
                                                                **config))


async def test_a_view_starts_with_the_content_then_follows_updates_deletes_and_purges(
        nc: Client) -> None:
    kv = await _bucket(nc)
    await kv.put("a", b"1")
    await kv.put("a", b"2")
    await kv.put("b", b"3")
    await kv.put("gone", b"4")
    await kv.delete("gone")
    view = KvView(nc.jetstream(), BUCKET, _decode)
    await view.start()
    try:
        assert view.ready.is_set() and view.ttl_s == 0
        assert sorted(view.values()) == [2, 3] and view.get("gone") is None
        await kv.put("b", b"5")
        await eventually(lambda: view.get("b") == 5, what="the update")
        await kv.delete("a")
        await eventually(lambda: view.get("a") is None, what="the delete")
        await kv.purge("b")
        await eventually(lambda: view.values() == [], what="the purge")
        assert view.last_seen("b") is None  # a delete is not an expiry: nothing left
    finally:
        await view.stop()


async def test_an_empty_bucket_is_ready_at_once(nc: Client) -> None:
    await _bucket(nc)
    view = KvView(nc.jetstream(), BUCKET, _decode)
    await view.start(wait_s=2.0)
    try:
        assert view.values() == []
    finally:
        await view.stop()


async def test_a_filtered_view_drops_a_key_whose_value_it_no_longer_keeps(nc: Client) -> None:
    kv = await _bucket(nc)
    await kv.put("k", b"2")
    await kv.put("odd", b"3")
    view = EvenView(nc)
    await view.start()
    try:
        assert view.values() == [2] and view.changes == [("k", None, 2)]
        await kv.put("k", b"7")  # no longer ours (a VM that moved to another node)
        await eventually(lambda: view.get("k") is None, what="the filtered-out update")
        assert view.changes[-1] == ("k", 2, None)
        await kv.put("k", b"not a number")
        await kv.put("k", b"8")
        await eventually(lambda: view.get("k") == 8, what="the update after a bad value")
    finally:
        await view.stop()


async def test_an_undecodable_value_replaces_the_old_one_with_nothing(nc: Client) -> None:
    kv = await _bucket(nc)
    await kv.put("k", b"2")
    view = KvView(nc.jetstream(), BUCKET, _decode)
    await view.start()
    try:
        await kv.put("k", b"{")
        await eventually(lambda: view.get("k") is None, what="the undecodable write")
    finally:
        await view.stop()


async def test_entries_of_a_bucket_with_a_ttl_expire_without_a_message(nc: Client) -> None:
    """The server drops expired entries silently (no markers): the view judges by write time,
    and keeps the last value for ``last_seen``."""
    kv = await _bucket(nc, ttl=1.0)
    view = KvView(nc.jetstream(), BUCKET, _decode)  # the TTL is read from the bucket
    await view.start()
    try:
        assert view.ttl_s == pytest.approx(1.0)
        await kv.put("n1", b"10")
        await eventually(lambda: view.get("n1") == 10, what="the heartbeat")
        now = time.time()
        assert view.get("n1", now + 1.1) is None and view.values(now + 1.1) == []
        await eventually(lambda: view.get("n1") is None, what="the expiry")
        assert view.last_seen("n1") == 10
        await kv.put("n1", b"11")
        await eventually(lambda: view.get("n1") == 11, what="the node back")
    finally:
        await view.stop()


async def test_an_expiry_marker_from_the_server_removes_the_entry(nc: Client) -> None:
    kv = await _bucket(nc, ttl=1.0, limit_marker_ttl=1.0)
    view = KvView(nc.jetstream(), BUCKET, _decode, ttl_s=3600.0)  # only the marker can remove it
    await view.start()
    try:
        await kv.put("n1", b"10")
        await eventually(lambda: view.get("n1") == 10, what="the heartbeat")
        await eventually(lambda: view.last_seen("n1") is None, timeout_s=10.0,
                         what="the server's MaxAge marker")
    finally:
        await view.stop()


async def test_a_view_catches_up_after_nats_restarts(nats_server: NatsServer,
                                                     nc: Client) -> None:
    kv = await _bucket(nc)
    await kv.put("a", b"1")
    view = KvView(nc.jetstream(), BUCKET, _decode)
    await view.start()
    try:
        await nats_server.stop()
        await nats_server.start()
        await eventually(lambda: nc.is_connected, timeout_s=10.0, what="the reconnection")
        writer = await nats.connect(**nats_server.connect_options(nats_auth.API))
        try:
            kv2 = await writer.jetstream().key_value(BUCKET)
            await kv2.put("a", b"2")
            await kv2.put("b", b"3")
            await kv2.delete("a")
        finally:
            await writer.close()
        await eventually(lambda: view.values() == [3], timeout_s=15.0,
                         what="the changes made after the restart")
    finally:
        await view.stop()
