"""NATS connection and the JetStream set-up every service shares (idempotent)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import nats
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue

from limiquantix.common import subjects

log = structlog.get_logger()

EVENTS_MAX_AGE_S = 7 * 24 * 3600
EVENTS_MAX_BYTES = 1 << 30
IDEMPOTENCY_TTL_S = 24 * 3600
CONSOLE_TICKET_SWEEP_S = 600


@contextlib.asynccontextmanager
async def connect(url: str, *, name: str) -> AsyncIterator[Client]:
    """A NATS connection that reconnects forever and is drained on exit."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", error=str(exc))

    nc = await nats.connect(
        servers=url.split(","), name=name, max_reconnect_attempts=-1,
        reconnect_time_wait=0.5, error_cb=on_error,
    )
    try:
        yield nc
    finally:
        if nc.is_connected:
            await nc.drain()
        else:
            await nc.close()


async def _add_or_update_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)


async def ensure_jetstream(js: JetStreamContext, *, heartbeat_interval_s: float) -> None:
    """Create (or update) every stream and bucket; safe to call from every service at start."""
    await _add_or_update_stream(js, StreamConfig(
        name=subjects.COMMANDS_STREAM, subjects=[subjects.all_commands()],
        retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
        duplicate_window=120.0,
    ))
    await _add_or_update_stream(js, StreamConfig(
        name=subjects.EVENTS_STREAM, subjects=[subjects.all_events()],
        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
        max_age=EVENTS_MAX_AGE_S, max_bytes=EVENTS_MAX_BYTES, discard=DiscardPolicy.OLD,
    ))
    for bucket in (subjects.VMS_BUCKET, subjects.VM_NAMES_BUCKET, subjects.IMAGES_BUCKET,
                   subjects.TOKENS_BUCKET):
        await _ensure_bucket(js, KeyValueConfig(bucket=bucket, history=1))
    await _ensure_bucket(js, KeyValueConfig(
        bucket=subjects.NODES_BUCKET, history=1, ttl=3 * heartbeat_interval_s,
    ))
    await _ensure_bucket(js, KeyValueConfig(
        bucket=subjects.IDEMPOTENCY_BUCKET, history=1, ttl=IDEMPOTENCY_TTL_S,
    ))
    # Tickets carry their own expiry; the bucket TTL only sweeps the ones never used.
    await _ensure_bucket(js, KeyValueConfig(
        bucket=subjects.CONSOLE_TOKENS_BUCKET, history=1, ttl=CONSOLE_TICKET_SWEEP_S,
    ))


async def _ensure_bucket(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    try:
        return await js.key_value(config.bucket)
    except Exception:
        return await js.create_key_value(config)


async def bucket(js: JetStreamContext, name: str) -> KeyValue:
    """An existing bucket (ensure_jetstream created it)."""
    return await js.key_value(name)
