"""``GET /v1/events``: the events stream as Server-Sent Events, resumable by stream sequence.

Each client gets an ephemeral ordered push consumer on ``LQ_EVENTS`` (filtered by VM with
``?vm=<id or name>``), started at the sequence after ``Last-Event-ID`` (header or
``?last_event_id=``), else at ``?since=`` (RFC 3339 time or seconds ago), else at new events.
The subscription callback only queues messages; one writer per client batches them into the
response. A client too slow to keep up is disconnected rather than buffered without bound: it
reconnects with ``Last-Event-ID`` and loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import structlog
from aiohttp import web
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from limiquantix.api import app_keys
from limiquantix.api.errors import VmNotFound
from limiquantix.api.openapi import OpenApiPart, Operation, Param
from limiquantix.api.routes_vms import resolve
from limiquantix.common import subjects
from limiquantix.common.errors import InvalidRequest

log = structlog.get_logger()

KEEPALIVE_S = 15.0
POLL_S = 1.0  # how often an idle stream checks for a gone client or a shutdown
MAX_QUEUED = 10_000
RETRY_MS = 2000
# The ordered consumer's idle heartbeat: a stalled or gapped delivery is noticed (and the
# consumer recreated from the last sequence seen) within about this long.
HEARTBEAT_S = 2.0

_OPEN = web.AppKey("sse_open_queues", set)  # set[asyncio.Queue[Msg | None]]


def start_config(
    *, last_event_id: str | None, since: str | None, now: datetime | None = None
) -> ConsumerConfig:
    """Where a client's consumer starts (resume > since > new events only)."""
    if last_event_id:
        try:
            seq = int(last_event_id)
        except ValueError:
            raise InvalidRequest(
                f"Last-Event-ID must be an event id (a number), not {last_event_id!r}"
            ) from None
        if seq < 0:
            raise InvalidRequest("Last-Event-ID must not be negative")
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=seq + 1)
    if since:
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME,
                              opt_start_time=parse_since(since, now=now))
    return ConsumerConfig(deliver_policy=DeliverPolicy.NEW)


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """``since``: an RFC 3339 time, or a number of seconds before now."""
    now = now or datetime.now(UTC)
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds < 0:
            raise InvalidRequest("since (seconds ago) must not be negative")
        return now - timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"since must be an RFC 3339 time or seconds ago, not {value!r}",
            hint="For example since=2026-01-01T00:00:00Z or since=600.",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def event_type(subject: str) -> str:
    """``lq.evt.vm.<id>.state_changed`` -> ``vm.state_changed`` (the event's tag)."""
    parts = subject.split(".")
    return f"{parts[2]}.{parts[-1]}" if len(parts) >= 5 else "event"


def format_event(msg: Msg) -> bytes:
    """One SSE frame: id (stream sequence), event (type tag), data (the JSON event)."""
    data = msg.data
    lines = data.split(b"\n") if b"\n" in data else [data]
    out = [b"id: %d\nevent: %s\n" % (msg.metadata.sequence.stream,
                                      event_type(msg.subject).encode())]
    out += [b"data: " + line + b"\n" for line in lines]
    out.append(b"\n")
    return b"".join(out)


async def _filter_subject(request: web.Request) -> str:
    ref = request.query.get("vm")
    if not ref:
        return subjects.all_events()
    try:
        vm_id = (await resolve(request.app, ref)).id
    except VmNotFound:
        # A deleted VM's events stay in the stream (and a client may be waiting for its
        # vm.deleted): an unknown reference filters as an id instead of failing.
        vm_id = ref
    try:
        return subjects.vm_events(vm_id)
    except ValueError:
        raise InvalidRequest(f"vm must be a VM id or name, not {ref!r}") from None


async def events(request: web.Request) -> web.StreamResponse:
    """GET /v1/events."""
    config = start_config(
        last_event_id=request.headers.get("Last-Event-ID") or request.query.get("last_event_id"),
        since=request.query.get("since"),
    )
    subject = await _filter_subject(request)
    queue: asyncio.Queue[Msg | None] = asyncio.Queue(maxsize=MAX_QUEUED)
    overflow = False

    async def on_msg(msg: Msg) -> None:
        nonlocal overflow
        try:
            queue.put_nowait(msg)
        except asyncio.QueueFull:
            overflow = True

    js = request.app[app_keys.JETSTREAM]
    sub = await js.subscribe(subject, stream=subjects.EVENTS_STREAM, cb=on_msg,
                             ordered_consumer=True, config=config, idle_heartbeat=HEARTBEAT_S,
                             pending_msgs_limit=-1, pending_bytes_limit=-1)
    open_queues = request.app[_OPEN]
    open_queues.add(queue)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    })
    try:
        await response.prepare(request)
        await response.write(b"retry: %d\n: connected\n\n" % RETRY_MS)
        last_write = time.monotonic()
        while not overflow:
            try:
                first = await asyncio.wait_for(queue.get(), POLL_S)
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    break
                if time.monotonic() - last_write >= KEEPALIVE_S:
                    await response.write(b": keep-alive\n\n")
                    last_write = time.monotonic()
                continue
            batch = [first]
            while not queue.empty() and len(batch) < 512:
                batch.append(queue.get_nowait())
            if None in batch:  # shutdown
                break
            await response.write(b"".join(format_event(m) for m in batch if m is not None))
            last_write = time.monotonic()
        if overflow:
            log.warning("sse client too slow; closing its stream", subject=subject)
    except ConnectionError:
        pass  # the client went away
    except Exception:
        # Headers are sent: a problem document cannot follow. Log and end the stream; the
        # client reconnects with Last-Event-ID.
        log.exception("sse stream failed", subject=subject)
    finally:
        open_queues.discard(queue)
        await _remove_consumer(js, sub)
    return response


async def _remove_consumer(js: JetStreamContext, sub: JetStreamContext.PushSubscription) -> None:
    """Unsubscribe and delete the ephemeral consumer now (the server would after its
    inactivity threshold): a closed stream leaves nothing behind."""
    with contextlib.suppress(Exception):
        await sub.unsubscribe()
    with contextlib.suppress(Exception):
        await js.delete_consumer(subjects.EVENTS_STREAM, sub._consumer)


async def _sse_ctx(app: web.Application) -> AsyncIterator[None]:
    app[_OPEN] = set()
    yield


async def _end_streams(app: web.Application) -> None:
    for queue in list(app.get(_OPEN, ())):
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(None)


OPENAPI = OpenApiPart(tag="events", operations=(
    Operation(
        method="GET", path="/v1/events", summary="Events as Server-Sent Events",
        media_type="text/event-stream", errors=(404, 422),
        description="Each event: `id:` stream sequence, `event:` type tag (e.g. "
                    "`vm.state_changed`), `data:` JSON. Resume with `Last-Event-ID`.",
        params=(
            Param(name="vm", description="only events of this VM (id or name)"),
            Param(name="since", description="RFC 3339 time, or seconds ago (e.g. 600)"),
            Param(name="last_event_id", description="resume after this event id"),
            Param(name="Last-Event-ID", where="header", description="resume after this id"),
        ),
    ),
))


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/events", events)
    app.cleanup_ctx.append(_sse_ctx)
    app.on_shutdown.append(_end_streams)
