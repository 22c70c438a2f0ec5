"""NATS connection and the JetStream set-up every service shares (idempotent)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import nats
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    ClusterInfo,
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue

from limiquantix.common import metrics, nats_auth, retry, subjects
from limiquantix.common.webhooks import DELIVERY_LOG_SIZE

log = structlog.get_logger()

EVENTS_MAX_AGE_S = 7 * 24 * 3600
EVENTS_MAX_BYTES = 1 << 30
IDEMPOTENCY_TTL_S = 24 * 3600
CONSOLE_TICKET_SWEEP_S = 600
JETSTREAM_WAIT_S = 120.0
JETSTREAM_POLL_S = 0.25
CONSUMER_SCALE_POLL_S = 0.5


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


# nats-server 2.15 gives every stream a default limit of 1,000 consumers unless the stream sets
# its own (0 and -1 mean that default, not "unlimited"). A fleet needs more: LQ_COMMANDS has one
# durable consumer per node, KV_lq_vms an ordered one per node and per gateway, LQ_EVENTS one per
# SSE client and webhook; at 1,000 nodes the 1,001st was refused (10026, bench/fleet.py). Every
# stream and bucket is laid out with this limit (raised in place on an older deployment).
MAX_CONSUMERS = 100_000


async def _add_or_update_stream(js: JetStreamContext, config: StreamConfig) -> bool:
    """True when the stream's replica count was changed."""
    try:
        await js.add_stream(config)
        return False
    except BadRequestError:
        # Exists with another configuration (e.g. fewer replicas): changed in place. The
        # server copies the data to the new peers itself.
        before = await js.stream_info(str(config.name))
        await js.update_stream(config)
        return (before.config.num_replicas or 1) != (config.num_replicas or 1)


def copies(cluster: ClusterInfo | None) -> int:
    """How many servers hold a stream or consumer: its leader and its replicas."""
    if cluster is None or not cluster.leader:
        return 1
    return 1 + len(cluster.replicas or [])


async def _wait_scaled(js: JetStreamContext, stream: str, replicas: int) -> None:
    """Poll until ``stream`` has ``replicas`` copies (the server adds peers one by one)."""
    deadline = time.monotonic() + JETSTREAM_WAIT_S
    while copies((await js.stream_info(stream)).cluster) != replicas:
        if time.monotonic() > deadline:
            raise TimeoutError(f"JetStream stream {stream} did not reach {replicas} replicas "
                               f"in {JETSTREAM_WAIT_S:g} s: are {replicas} servers up?")
        await asyncio.sleep(JETSTREAM_POLL_S)


async def _scale_consumers(js: JetStreamContext, stream: str, replicas: int) -> None:
    """Give every durable consumer of ``stream`` the stream's new replica count.

    nats-server leaves consumers made before a stream's scale-up at their old count (a node's
    command consumer on one server would still die with that server), and ignores a consumer
    update sent while the stream is still adding peers: the update is sent again until the
    consumer has its copies.
    """
    await _wait_scaled(js, stream, replicas)
    deadline = time.monotonic() + JETSTREAM_WAIT_S
    for info in await js.consumers_info(stream):
        if not info.config.durable_name or copies(info.cluster) == replicas:
            continue
        log.info("jetstream consumer replicas changed", stream=stream,
                 consumer=info.name, replicas_before=copies(info.cluster), replicas=replicas)
        config = dataclasses.replace(info.config, num_replicas=replicas)
        while copies(info.cluster) != replicas:
            if time.monotonic() > deadline:
                raise TimeoutError(f"JetStream consumer {stream} > {info.name} did not reach "
                                   f"{replicas} replicas in {JETSTREAM_WAIT_S:g} s")
            await js.add_consumer(stream, config)
            await asyncio.sleep(CONSUMER_SCALE_POLL_S)
            info = await js.consumer_info(stream, str(info.name))


async def ensure_jetstream(js: JetStreamContext, *, heartbeat_interval_s: float,
                           replicas: int = 1) -> None:
    """Create (or update) every stream and bucket with ``replicas`` copies each
    (``LQ_JETSTREAM_REPLICAS``); safe to call from every service at start, and again with
    another ``replicas`` to change a running deployment in place (durable consumers follow).

    A cluster still electing its JetStream leader answers "temporarily unavailable" or not at
    all for a moment: each step is retried for up to ``JETSTREAM_WAIT_S``.
    """
    scaled: list[str] = []

    async def step(what: str, call: Callable[[], Awaitable[bool]]) -> None:
        if await retry.retry_transient(call, what=f"jetstream set-up: {what}",
                                       deadline_s=JETSTREAM_WAIT_S):
            scaled.append(what)

    await step(subjects.COMMANDS_STREAM, lambda: _add_or_update_stream(js, StreamConfig(
        name=subjects.COMMANDS_STREAM, subjects=[subjects.all_commands()],
        retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
        duplicate_window=120.0, num_replicas=replicas, max_consumers=MAX_CONSUMERS,
    )))
    await step(subjects.EVENTS_STREAM, lambda: _add_or_update_stream(js, StreamConfig(
        name=subjects.EVENTS_STREAM, subjects=[subjects.all_events()],
        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
        max_age=EVENTS_MAX_AGE_S, max_bytes=EVENTS_MAX_BYTES, discard=DiscardPolicy.OLD,
        num_replicas=replicas, max_consumers=MAX_CONSUMERS,
    )))
    for config in bucket_configs(heartbeat_interval_s=heartbeat_interval_s, replicas=replicas):
        await step(kv_stream(config.bucket), functools.partial(_ensure_bucket, js, config))
    await step(object_stream(subjects.IMAGE_FILES_BUCKET),
               functools.partial(_ensure_object_store, js, subjects.IMAGE_FILES_BUCKET, replicas))
    for stream in scaled:
        await retry.retry_transient(functools.partial(_scale_consumers, js, stream, replicas),
                                    what=f"jetstream set-up: {stream} consumers",
                                    deadline_s=JETSTREAM_WAIT_S)
    # Created is not yet writable in a cluster: the gateway writes next, as the others do.
    await wait_for_jetstream(js, [subjects.COMMANDS_STREAM, subjects.EVENTS_STREAM,
                                  *(kv_stream(c.bucket) for c in bucket_configs(
                                      heartbeat_interval_s=heartbeat_interval_s)),
                                  object_stream(subjects.IMAGE_FILES_BUCKET)])


def bucket_configs(*, heartbeat_interval_s: float, replicas: int = 1) -> list[KeyValueConfig]:
    """Every KV bucket the gateway lays out."""
    plain = [KeyValueConfig(bucket=b, history=1, replicas=replicas)
             for b in (subjects.VMS_BUCKET, subjects.VM_NAMES_BUCKET, subjects.IMAGES_BUCKET,
                       subjects.TOKENS_BUCKET, subjects.WEBHOOKS_BUCKET,
                       subjects.ALLOCATIONS_BUCKET)]
    return [
        *plain,
        KeyValueConfig(bucket=subjects.NODES_BUCKET, history=1, ttl=3 * heartbeat_interval_s,
                       replicas=replicas),
        KeyValueConfig(bucket=subjects.IDEMPOTENCY_BUCKET, history=1, ttl=IDEMPOTENCY_TTL_S,
                       replicas=replicas),
        # The per-key history is each webhook's bounded delivery log.
        KeyValueConfig(bucket=subjects.WEBHOOK_DELIVERIES_BUCKET, history=DELIVERY_LOG_SIZE,
                       replicas=replicas),
        # Tickets carry their own expiry; the bucket TTL only sweeps the ones never used.
        KeyValueConfig(bucket=subjects.CONSOLE_TOKENS_BUCKET, history=1,
                       ttl=CONSOLE_TICKET_SWEEP_S, replicas=replicas),
    ]


def kv_stream(bucket: str) -> str:
    """The JetStream stream behind a KV bucket."""
    return f"KV_{bucket}"


def object_stream(bucket: str) -> str:
    """The JetStream stream behind an Object Store bucket."""
    return f"OBJ_{bucket}"


# What each service opens at start; the gateway creates them (ensure_jetstream).
NODE_STREAMS = (
    subjects.COMMANDS_STREAM, subjects.EVENTS_STREAM, kv_stream(subjects.VMS_BUCKET),
    kv_stream(subjects.VM_NAMES_BUCKET), kv_stream(subjects.NODES_BUCKET),
)
IMAGE_LIBRARY_STREAMS = (subjects.EVENTS_STREAM, kv_stream(subjects.IMAGES_BUCKET))


async def wait_for_jetstream(js: JetStreamContext, streams: Iterable[str], *,
                             timeout_s: float = JETSTREAM_WAIT_S) -> None:
    """Wait until the gateway has created ``streams`` (``kv_stream(b)`` for a bucket) and each
    has a leader to take writes.

    Only the gateway may create or change streams and buckets (docs/security.md): the node
    agent and the image library, which may start first, wait here instead. In a cluster a
    replicated stream exists (its info answers) a moment before its replicas have elected a
    leader; a write in that moment gets "no responders" (seen in CI: the image library's first
    catalog write right after ``lq-local --nats-cluster 3`` started), so existing is not enough.
    """
    deadline = time.monotonic() + timeout_s
    for stream in streams:
        while True:
            try:
                info = await js.stream_info(stream)
                if _has_leader(info.cluster):
                    break
                waiting_for = "a leader for JetStream stream"
            except NotFoundError:
                waiting_for = "the gateway to create JetStream stream"
            except Exception as exc:
                if not retry.is_nats_transient(exc):
                    raise
                waiting_for = "JetStream to answer about stream"
            if time.monotonic() > deadline:
                raise TimeoutError(f"still waiting for {waiting_for} {stream} after "
                                   f"{timeout_s:.0f} s: is the gateway (lq-api) running on this "
                                   "NATS, and are most of its servers up?")
            log.info(f"waiting for {waiting_for}", stream=stream)
            await asyncio.sleep(JETSTREAM_POLL_S)


def _has_leader(cluster: ClusterInfo | None) -> bool:
    """A stream on a single server has no cluster info and is its own leader."""
    return cluster is None or bool(cluster.leader)


async def _ensure_bucket(js: JetStreamContext, config: KeyValueConfig) -> bool:
    """Create the bucket, or give an existing one ``config.replicas`` copies (a bucket is the
    stream ``KV_<bucket>``: its replica count changes like any stream's); True when changed."""
    try:
        info = await js.stream_info(kv_stream(config.bucket))
    except NotFoundError:
        await js.create_key_value(config)
        info = await js.stream_info(kv_stream(config.bucket))
    scaled = (info.config.num_replicas or 1) != config.replicas
    if not scaled and (info.config.max_consumers or 0) >= MAX_CONSUMERS:
        return False
    if scaled:
        log.info("jetstream bucket replicas changed", bucket=config.bucket,
                 replicas_before=info.config.num_replicas or 1, replicas=config.replicas)
    await js.update_stream(dataclasses.replace(info.config, num_replicas=config.replicas,
                                               max_consumers=MAX_CONSUMERS))
    return scaled


async def _ensure_object_store(js: JetStreamContext, name: str, replicas: int) -> bool:
    """Create the Object Store bucket, or give it ``replicas`` copies; True when changed."""
    try:
        info = await js.stream_info(object_stream(name))
    except NotFoundError:
        await js.create_object_store(name, config=ObjectStoreConfig(
            storage=StorageType.FILE, replicas=replicas))
        return False
    if (info.config.num_replicas or 1) == replicas:
        return False
    await js.update_stream(dataclasses.replace(info.config, num_replicas=replicas))
    return True


async def bucket(js: JetStreamContext, name: str) -> KeyValue:
    """An existing bucket (ensure_jetstream created it)."""
    return await js.key_value(name)
