"""Room for a fleet's consumers on every stream the gateway lays out.

nats-server 2.15 gives every stream a default limit of 1,000 consumers unless the stream sets
its own, and a value of 0 or -1 means that default, not "unlimited" (nats.net#1256). A fleet
needs more on several streams: ``LQ_COMMANDS`` has one durable consumer per node,
``KV_lq_vms`` an ordered consumer per node (its record view) and per gateway, ``LQ_EVENTS``
one per SSE client and webhook. At 1,000 nodes the 1,001st consumer was refused with
``maximum consumers limit reached`` (10026), found by bench/fleet.py. The gateway therefore
raises the limit of each of our streams to :data:`MAX_CONSUMERS` at start (idempotent: only a
stream below it is updated; nats-server allows raising it in place since 2.11).
"""

from __future__ import annotations

import dataclasses

import structlog
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from limiquantix.common import nats_client, subjects

log = structlog.get_logger()

MAX_CONSUMERS = 100_000  # per stream: a fleet of 10,000+ nodes, each SSE client and webhook


def our_streams() -> list[str]:
    """Every stream the gateway lays out (buckets are their KV_<bucket> streams)."""
    buckets = [config.bucket for config in nats_client.bucket_configs(heartbeat_interval_s=1.0)]
    return [subjects.COMMANDS_STREAM, subjects.EVENTS_STREAM,
            *(nats_client.kv_stream(b) for b in (*buckets, subjects.ALLOCATIONS_BUCKET))]


async def ensure_consumer_room(js: JetStreamContext) -> list[str]:
    """Raise each of our streams' consumer limit to MAX_CONSUMERS; the streams changed."""
    changed = []
    for stream in our_streams():
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            continue
        if (info.config.max_consumers or 0) >= MAX_CONSUMERS:
            continue
        await js.update_stream(dataclasses.replace(info.config, max_consumers=MAX_CONSUMERS))
        changed.append(stream)
    if changed:
        log.info("stream consumer limits raised for a fleet", streams=changed,
                 max_consumers=MAX_CONSUMERS)
    return changed
