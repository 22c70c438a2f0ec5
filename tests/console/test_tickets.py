"""Console tickets in a real JetStream KV bucket: hash-only, single use under races, expiry."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js.kv import KeyValue

from limiquantix.api.console.errors import TicketExpired, TicketInvalid
from limiquantix.api.console.tickets import TicketStore, token_key
from limiquantix.common import nats_client, subjects
from limiquantix.common.nats_server import NatsServer


@pytest.fixture
async def kv(nats_server: NatsServer) -> AsyncIterator[KeyValue]:
    nc = await nats.connect(**nats_server.connect_options("api"))  # tickets are the gateway's
    js = nc.jetstream()
    await nats_client.ensure_jetstream(js, heartbeat_interval_s=1.0)
    yield await js.key_value(subjects.CONSOLE_TOKENS_BUCKET)
    await nc.close()


async def test_only_the_tokens_hash_is_stored(kv: KeyValue) -> None:
    token, ticket = await TicketStore(kv, ttl_s=60).issue(vm_id="vm-1", node="n", user="u")
    assert len(token) >= 43  # 32 random bytes
    keys = await kv.keys()
    assert keys == [hashlib.sha256(token.encode()).hexdigest()] == [token_key(token)]
    stored = (await kv.get(keys[0])).value or b""
    assert token.encode() not in stored and b"vm-1" in stored
    assert (ticket.expires_at - ticket.created).total_seconds() == 60


async def test_ticket_works_once(kv: KeyValue) -> None:
    store = TicketStore(kv, ttl_s=60)
    token, _ = await store.issue(vm_id="vm-1", node="n", user="u")
    assert (await store.consume(token)).vm_id == "vm-1"
    with pytest.raises(TicketInvalid):
        await store.consume(token)


async def test_racing_consumers_exactly_one_wins(kv: KeyValue) -> None:
    """Many gateways (stores) consume one token at once: the KV CAS lets one through."""
    stores = [TicketStore(kv, ttl_s=60) for _ in range(8)]
    for _ in range(10):
        token, _ = await stores[0].issue(vm_id="vm-1", node="n", user="u")
        results = await asyncio.gather(*(s.consume(token) for s in stores),
                                       return_exceptions=True)
        wins = [r for r in results if not isinstance(r, BaseException)]
        assert len(wins) == 1
        assert all(isinstance(r, TicketInvalid) for r in results if r not in wins)


async def test_expired_ticket_is_refused(kv: KeyValue) -> None:
    store = TicketStore(kv, ttl_s=0.2)
    token, _ = await store.issue(vm_id="vm-1", node="n", user="u")
    await asyncio.sleep(0.3)  # deliberate: time passes, the ticket's TTL runs out
    with pytest.raises(TicketExpired):
        await store.consume(token)


@pytest.mark.parametrize("token", ["", "x" * 500, "not-a-token"])
async def test_unknown_or_malformed_token_is_refused(kv: KeyValue, token: str) -> None:
    with pytest.raises(TicketInvalid):
        await TicketStore(kv, ttl_s=60).consume(token)
