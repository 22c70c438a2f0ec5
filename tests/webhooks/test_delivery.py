"""The deliverer on a real nats-server (production permissions) and a real receiver: giving up
on an event the receiver keeps refusing, and the pure parts (patterns, backoff)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from limiquantix.api.webhook_delivery import Deliverer, Sender, consumer_config, retry_delay, waited
from limiquantix.common import nats_auth, nats_client, settings, subjects
from limiquantix.common.events import VmDeleted, VmStateChanged, event_encoder
from limiquantix.common.model import utcnow
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.vms import VmState
from limiquantix.common.webhooks import (
    UnknownEventPattern,
    WebhookRecord,
    attempt_decoder,
    check_patterns,
    filter_subjects,
    matches,
    webhook_encoder,
)
from tests.support.webhooks import Receiver


@pytest.fixture
async def gateway_nats(nats_server: NatsServer) -> AsyncIterator[Client]:
    nc = await nats.connect(**nats_server.connect_options(nats_auth.API))
    await nats_client.ensure_jetstream(nc.jetstream(), heartbeat_interval_s=1.0)
    try:
        yield nc
    finally:
        await nc.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    running = Receiver()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def test_an_event_refused_past_the_give_up_time_is_logged_gave_up_and_the_next_follows(
        gateway_nats: Client, receiver: Receiver) -> None:
    js = gateway_nats.jetstream()
    config = settings.load({}, webhook_allowed_networks="127.0.0.1/32", webhook_retry_max_s=0.2,
                           webhook_give_up_s=1.0, webhook_timeout_s=2.0)
    record = WebhookRecord(id="a" * 32, url=receiver.url, events=("vm.*",),
                           secret=receiver.secret, created_at=utcnow())
    await js.add_consumer(subjects.EVENTS_STREAM, consumer_config(
        record.id, filter_subjects(record.events), timeout_s=2.0))
    await (await js.key_value(subjects.WEBHOOKS_BUCKET)).create(
        record.id, webhook_encoder.encode(record))
    deliveries = await js.key_value(subjects.WEBHOOK_DELIVERIES_BUCKET)
    receiver.failing_subjects.add("vm-poison")
    for vm_id in ("vm-poison", "vm-fine"):
        event = VmStateChanged(vm_id=vm_id, state=VmState.RUNNING)
        await js.publish(subjects.vm_event(vm_id, "state_changed"), event_encoder.encode(event))
    # Not ours: a node event is filtered out by the consumer, never delivered.
    await js.publish(subjects.node_event("n1", "state_changed"), b'{"type":"node.state_changed",'
                     b'"node":"n1","online":true}')

    deliverer = Deliverer(js, config, Sender(config, deliveries))
    await deliverer.start()
    started = time.monotonic()
    try:
        [got] = await receiver.wait_for(1, timeout_s=20)
    finally:
        await deliverer.stop()
    assert got.event["subject"] == "vm-fine" and got.signature_ok
    assert time.monotonic() - started >= 1.0  # the refused one was retried for the give-up time
    log = [attempt_decoder.decode(e.value) for e in await deliveries.history(record.id)
           if e.value]
    poison = [a for a in log if a.subject == "vm-poison"]
    assert [a.outcome for a in poison][-1] == "gave_up"
    assert {a.outcome for a in poison[:-1]} == {"retrying"}
    assert [a.attempt for a in poison] == list(range(1, len(poison) + 1))
    assert all(a.status_code == 500 and "receiver refuses" in a.error for a in poison)
    assert log[-1].subject == "vm-fine" and log[-1].outcome == "delivered"


async def test_two_gateways_share_a_webhook_and_deliver_each_event_once_in_order(
        nats_server: NatsServer, gateway_nats: Client, receiver: Receiver) -> None:
    """Two deliverers (as two replicas, each its own connection) pull from the one consumer."""
    js = gateway_nats.jetstream()
    config = settings.load({}, webhook_allowed_networks="127.0.0.1/32")
    record = WebhookRecord(id="c" * 32, url=receiver.url, events=("vm.state_changed",),
                           secret=receiver.secret, created_at=utcnow())
    await js.add_consumer(subjects.EVENTS_STREAM, consumer_config(
        record.id, filter_subjects(record.events), timeout_s=2.0))
    await (await js.key_value(subjects.WEBHOOKS_BUCKET)).create(
        record.id, webhook_encoder.encode(record))
    other = await nats.connect(**nats_server.connect_options(nats_auth.API))
    replicas = []
    try:
        for nc in (gateway_nats, other):
            replica_js = nc.jetstream()
            deliveries = await replica_js.key_value(subjects.WEBHOOK_DELIVERIES_BUCKET)
            replica = Deliverer(replica_js, config, Sender(config, deliveries))
            await replica.start()
            replicas.append(replica)
        sequences = []
        for n in range(40):
            vm_id = f"vm-{n % 4}"
            ack = await js.publish(subjects.vm_event(vm_id, "state_changed"), event_encoder.encode(
                VmStateChanged(vm_id=vm_id, state=VmState.RUNNING)))
            sequences.append(ack.seq)
        got = await receiver.wait_for(40, timeout_s=30)
    finally:
        for replica in replicas:
            await replica.stop()
        await other.close()
    assert [int(r.event["id"]) for r in got] == sequences
    assert len(receiver.received) == 40  # none twice
    assert all(r.signature_ok for r in got)


async def test_a_gateway_stopping_mid_delivery_hands_the_event_to_another_at_once(
        nats_server: NatsServer, gateway_nats: Client, receiver: Receiver) -> None:
    """Without the hand-back the other replica would wait for the ack wait (timeout + 20 s)."""
    js = gateway_nats.jetstream()
    config = settings.load({}, webhook_allowed_networks="127.0.0.1/32", webhook_timeout_s=20.0)
    record = WebhookRecord(id="d" * 32, url=receiver.url, events=("*",),
                           secret=receiver.secret, created_at=utcnow())
    await js.add_consumer(subjects.EVENTS_STREAM, consumer_config(
        record.id, filter_subjects(record.events), timeout_s=20.0))
    await (await js.key_value(subjects.WEBHOOKS_BUCKET)).create(
        record.id, webhook_encoder.encode(record))
    deliveries = await js.key_value(subjects.WEBHOOK_DELIVERIES_BUCKET)
    receiver.hold_next = 1
    first = Deliverer(js, config, Sender(config, deliveries))
    await first.start()
    other = await nats.connect(**nats_server.connect_options(nats_auth.API))
    try:
        ack = await js.publish(subjects.vm_event("vm-1", "deleted"), event_encoder.encode(
            VmDeleted(vm_id="vm-1")))
        deadline = time.monotonic() + 10
        while receiver.held == 0:
            assert time.monotonic() < deadline, "the first attempt never arrived"
            await asyncio.sleep(0.02)
        other_js = other.jetstream()
        second = Deliverer(other_js, config, Sender(
            config, await other_js.key_value(subjects.WEBHOOK_DELIVERIES_BUCKET)))
        await second.start()
        try:
            await first.stop()
            stopped = time.monotonic()
            [got] = await receiver.wait_for(1, timeout_s=15)
            handed_over_s = time.monotonic() - stopped
        finally:
            await second.stop()
    finally:
        await other.close()
    assert int(got.event["id"]) == ack.seq and got.signature_ok
    assert handed_over_s < 10.0, handed_over_s


def test_patterns_are_checked_against_the_event_types_and_narrowed() -> None:
    assert check_patterns(("vm.*", "vm.deleted", "image.progress", "vm.*")) == (
        "vm.*", "image.progress")
    assert check_patterns(("node.*", "*")) == ("*",)
    for bad in ("vm.exploded", "disk.*"):
        with pytest.raises(UnknownEventPattern):
            check_patterns((bad,))
    assert filter_subjects(("vm.*", "image.progress")) == ["lq.evt.vm.>",
                                                           "lq.evt.image.*.progress"]
    assert filter_subjects(("*",)) == ["lq.evt.>"]
    assert matches(("vm.*",), "vm.deleted") and not matches(("vm.deleted",), "vm.guest_ready")


def test_retries_back_off_to_the_cap_and_add_up_to_the_give_up_time() -> None:
    assert [retry_delay(n, cap_s=60) for n in (1, 2, 3, 8, 9, 50)] == [0.5, 1, 2, 60, 60, 60]
    assert waited(3, cap_s=60) == 3.5
    assert waited(0, cap_s=60) == 0
