"""NATS reconnects and event publishes are counted (a real nats-server, in this process)."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY

from limiquantix.common import nats_auth, nats_client
from limiquantix.common.events import NodeStateChanged
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.publish import publish_event


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_nats_restart_counts_a_disconnect_and_a_reconnect(
        nats_server: NatsServer) -> None:
    creds = str(nats_server.creds_for(nats_auth.API))
    before = value("lq_nats_reconnects_total", service="metrics-test")
    async with nats_client.connect(nats_server.url, name="lq-metrics-test", creds=creds) as nc:
        await nats_server.stop()
        await nats_server.start()
        deadline = time.monotonic() + 15
        while value("lq_nats_reconnects_total", service="metrics-test") == before:
            assert time.monotonic() < deadline, "no reconnect counted"
            await asyncio.sleep(0.1)
        assert nc.is_connected
    assert value("lq_nats_disconnects_total", service="metrics-test") >= 1


async def test_published_and_failed_events_are_counted_by_type(nats_server: NatsServer) -> None:
    creds = str(nats_server.creds_for(nats_auth.API))
    async with nats_client.connect(nats_server.url, name="lq-metrics-test", creds=creds) as nc:
        js = nc.jetstream()
        event = NodeStateChanged(node="node-m", online=True)
        failed = value("lq_event_publish_failures_total", type="node.state_changed",
                       best_effort="true")
        # No events stream yet: JetStream has nothing to store it in.
        await publish_event(js, event, best_effort=True)
        assert value("lq_event_publish_failures_total", type="node.state_changed",
                     best_effort="true") == failed + 1

        await nats_client.ensure_jetstream(js, heartbeat_interval_s=1.0)
        published = value("lq_events_published_total", type="node.state_changed")
        await publish_event(js, event)
        assert value("lq_events_published_total", type="node.state_changed") == published + 1
