"""NATS connection and the JetStream set-up every service shares (idempotent)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

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
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue

from limiquantix.common import metrics, nats_auth, subjects
from limiquantix.common.webhooks import DELIVERY_LOG_SIZE

log = structlog.get_logger()

EVENTS_MAX_AGE_S = 7 * 24 * 3600
EVENTS_MAX_BYTES = 1 << 30
IDEMPOTENCY_TTL_S = 24 * 3600
CONSOLE_TICKET_SWEEP_S = 600
JETSTREAM_WAIT_S = 120.0
JETSTREAM_POLL_S = 0.25


def credentials(creds: str, ca_file: str = "") -> dict[str, Any]:
    """``nats.connect`` options: the identity whose seed is in ``creds`` (``LQ_NATS_CREDS``)
    and the CA that verifies the server's TLS certificate (``LQ_NATS_CA_FILE``).

    The reply inbox is the identity's own (``_INBOX.<public key>``): the server lets only this
    identity subscribe there (nats_auth.py).
    """
    options: dict[str, Any] = {}
    if creds:
        # A 60-byte file, read once per connection: not worth a thread.
        seed = nats_auth.read_seed(Path(creds))
        options.update(nkeys_seed_str=seed,
                       inbox_prefix=nats_auth.inbox_prefix(nats_auth.public_key(seed)))
    if ca_file:
        options["tls"] = ssl.create_default_context(cafile=ca_file)
    return options


@contextlib.asynccontextmanager
async def connect(url: str, *, name: str, creds: str = "", ca_file: str = ""
                  ) -> AsyncIterator[Client]:
    """A NATS connection as the identity whose seed is in ``creds``; reconnects forever and
    is drained on exit. An empty ``creds`` connects anonymously (servers without auth)."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", error=str(exc))

    # The service label: "node-agent-<id>" counts as "node-agent" (bounded label values).
    service = "node-agent" if name.startswith("node-agent-") else name.removeprefix("lq-")

    async def on_disconnected() -> None:
        metrics.NATS_DISCONNECTS.labels(service).inc()

    async def on_reconnected() -> None:
        metrics.NATS_RECONNECTS.labels(service).inc()

    nc = await nats.connect(
        servers=url.split(","), name=name, max_reconnect_attempts=-1,
        reconnect_time_wait=0.5, error_cb=on_error, disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected, **credentials(creds, ca_file),
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
    await _ensure_bucket(js, KeyValueConfig(bucket=subjects.WEBHOOKS_BUCKET, history=1))
    # The per-key history is each webhook's bounded delivery log.
    await _ensure_bucket(js, KeyValueConfig(
        bucket=subjects.WEBHOOK_DELIVERIES_BUCKET, history=DELIVERY_LOG_SIZE,
    ))
    # Tickets carry their own expiry; the bucket TTL only sweeps the ones never used.
    await _ensure_bucket(js, KeyValueConfig(
        bucket=subjects.CONSOLE_TOKENS_BUCKET, history=1, ttl=CONSOLE_TICKET_SWEEP_S,
    ))


def kv_stream(bucket: str) -> str:
    """The JetStream stream behind a KV bucket."""
    return f"KV_{bucket}"


# What each service opens at start; the gateway creates them (ensure_jetstream).
NODE_STREAMS = (
    subjects.COMMANDS_STREAM, subjects.EVENTS_STREAM, kv_stream(subjects.VMS_BUCKET),
    kv_stream(subjects.VM_NAMES_BUCKET), kv_stream(subjects.NODES_BUCKET),
)
IMAGE_LIBRARY_STREAMS = (subjects.EVENTS_STREAM, kv_stream(subjects.IMAGES_BUCKET))


async def wait_for_jetstream(js: JetStreamContext, streams: Iterable[str], *,
                             timeout_s: float = JETSTREAM_WAIT_S) -> None:
    """Wait until the gateway has created ``streams`` (``kv_stream(b)`` for a bucket).

    Only the gateway may create or change streams and buckets (docs/security.md): the node
    agent and the image library, which may start first, wait here instead.
    """
    deadline = time.monotonic() + timeout_s
    for stream in streams:
        while True:
            try:
                await js.stream_info(stream)
                break
            except NotFoundError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"JetStream stream {stream} was never created: is the "
                                       "gateway (lq-api) running on this NATS?") from None
                log.info("waiting for the gateway to create JetStream streams", stream=stream)
                await asyncio.sleep(JETSTREAM_POLL_S)


async def _ensure_bucket(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    try:
        return await js.key_value(config.bucket)
    except Exception:
        return await js.create_key_value(config)


async def bucket(js: JetStreamContext, name: str) -> KeyValue:
    """An existing bucket (ensure_jetstream created it)."""
    return await js.key_value(name)
