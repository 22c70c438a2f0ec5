"""``GET /v1/events``: the events stream as Server-Sent Events, resumable by stream sequence.

Each client gets an ephemeral pull consumer on ``LQ_EVENTS`` (filtered by VM with ``?vm=<id
or name>``), started at the sequence after ``Last-Event-ID`` (header or ``?last_event_id=``),
else at ``?since=`` (RFC 3339 time or seconds ago), else at new events. Its writer pulls one
batch, writes it, pulls the next: what a client can hold in the gateway is bounded by one batch
(:data:`FETCH_BATCH` events) and the transport's write buffer (aiohttp pauses writing above its
high-water mark), whatever the backlog or the client's speed. A client that takes no bytes for
``LQ_SSE_WRITE_TIMEOUT_S`` is dropped; it reconnects with ``Last-Event-ID`` and loses nothing.
The number of streams is capped (``LQ_SSE_MAX_CLIENTS``): past it, ``503`` with
``Retry-After``.

Streams of every event (no ``?vm=``) share one consumer per gateway, the tail (:class:`_Tail`):
it pulls each event once, formats its frame once and keeps the last frames in memory; each such
stream writes the frames after its own last event id from there. Measured with 100 subscribers
and 50 creating clients (bench/fleet.py): one consumer per stream cost the gateway ~35 ms of CPU
per VM created (each event pulled, parsed and formatted 100 times) and NATS a delivery per
stream. A stream whose next event the tail no longer holds (a replay, a resume from long ago, a
client slower than the tail's memory) reads its own consumer, as before, until it has caught
up. A ``?vm=`` stream keeps its own filtered consumer: the server sends it only its VM's events.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import structlog
from aiohttp import web
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from limiquantix.api import app_keys
from limiquantix.api.errors import VmNotFound
from limiquantix.api.openapi import OpenApiPart, Operation, Param
from limiquantix.api.problems import problem_response, request_id_of
from limiquantix.api.routes_vms import resolve
from limiquantix.common import subjects
from limiquantix.common.errors import InvalidRequest, LimiquantixError

log = structlog.get_logger()

KEEPALIVE_S = 15.0
POLL_S = 1.0  # how often an idle stream checks for a gone client or a shutdown
# Events are small (~0.5-2 KiB): a batch is at most ~0.25 MiB in the gateway.
FETCH_BATCH = 128
CONSUMER_INACTIVE_S = 30.0  # a consumer whose gateway vanished is removed by the server
RETRY_AFTER_S = 5
MAX_SEQUENCE = (1 << 63) - 1  # JetStream's stream sequences are 64-bit
MAX_SINCE_S = 100 * 365 * 86400.0
RETRY_MS = 2000

# The frames the tail keeps: 1,024 to 2,048 events (~1-4 MiB), a few seconds at a busy
# fleet's rate; a stream further behind reads its own consumer.
TAIL_KEEP = 1024

_OPEN = web.AppKey("sse_open_streams", set)  # set[_Stream]: the streams being served
_TAIL = web.AppKey("sse_tail", dict)  # {"tail": _Tail}: the shared consumer, while it has users


class TooManyStreams(LimiquantixError):
    """Every event stream slot is taken (``LQ_SSE_MAX_CLIENTS``)."""

    code = "too_many_streams"
    status = 503
    default_hint = f"Retry in {RETRY_AFTER_S} s; resume with Last-Event-ID to lose nothing."


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
        if not 0 <= seq <= MAX_SEQUENCE:
            raise InvalidRequest(f"Last-Event-ID must be an event id (0 to {MAX_SEQUENCE})")
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=seq + 1)
    if since:
        start = parse_since(since, now=now)
        # JetStream starts a future start time at the stream's first message: "since later
        # than now" is "from now on" (issue 11: since=<future> replayed everything).
        if start < (now or datetime.now(UTC)):
            return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME,
                                  opt_start_time=start)
    return ConsumerConfig(deliver_policy=DeliverPolicy.NEW)


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """``since``: an RFC 3339 time, or a number of seconds before now."""
    now = now or datetime.now(UTC)
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # NaN, infinities and spans past datetime's range are no time at all.
        if not 0 <= seconds <= MAX_SINCE_S:
            raise InvalidRequest(
                f"since (seconds ago) must be between 0 and {MAX_SINCE_S:.0f}, not {value!r}")
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
    open_streams = request.app[_OPEN]
    if len(open_streams) >= request.app[app_keys.SETTINGS].sse_max_clients:
        response = problem_response(
            TooManyStreams(f"{len(open_streams)} event streams are open").to_reply(),
            request_id_of(request))
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    stream = _Stream(request, subject)
    open_streams.add(stream)  # before any await: concurrent requests see the slot taken
    try:
        return await stream.run(config)
    finally:
        open_streams.discard(stream)


class _Stream:
    """One client's stream, pulled from its own ephemeral consumer one batch at a time.

    Pulling, not pushing: the server keeps the backlog and we hold one batch, so a replay of a
    week of events or a client slower than the events costs the gateway one batch and the
    transport's write buffer. The consumer sequence of each message must follow the last one:
    a batch lost in transit (a NATS reconnect) shows as a gap, and the consumer is recreated
    after the last event written, as nats.py's ordered consumers do.
    """

    def __init__(self, request: web.Request, subject: str) -> None:
        self.request = request
        self.subject = subject
        self.js = request.app[app_keys.JETSTREAM]
        self.stopping = request.app[app_keys.STOPPING]
        # Buffers full and no byte taken for this long: the client is stalled, dropped.
        self.write_timeout_s = request.app[app_keys.SETTINGS].sse_write_timeout_s
        self.last_seq = 0  # stream sequence of the last event written
        self.last_consumer_seq = 0
        self.last_write = 0.0  # when a byte was last written (keep-alives)

    async def _consumer(self, config: ConsumerConfig) -> JetStreamContext.PullSubscription:
        config = dataclasses.replace(config, ack_policy=AckPolicy.NONE,
                                     inactive_threshold=CONSUMER_INACTIVE_S, mem_storage=True)
        self.last_consumer_seq = 0
        return await self.js.pull_subscribe(self.subject, stream=subjects.EVENTS_STREAM,
                                            config=config)

    def _resume_config(self) -> ConsumerConfig:
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                              opt_start_seq=self.last_seq + 1)

    async def run(self, config: ConsumerConfig) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        })
        shared = self.subject == subjects.all_events()
        tail: _Tail | None = None
        sub: JetStreamContext.PullSubscription | None = None
        if shared and config.deliver_policy == DeliverPolicy.NEW:
            # New events only: from the event after the stream's last one now, on the tail.
            info = await self.js.stream_info(subjects.EVENTS_STREAM)
            self.last_seq = info.state.last_seq
            tail = _Tail.join(self.request.app, self.js, self.last_seq + 1)
        if tail is None:
            sub = await self._consumer(config)
        try:
            await response.prepare(self.request)
            await response.write(b"retry: %d\n: connected\n\n" % RETRY_MS)
            self.last_write = time.monotonic()
            while not self.stopping.is_set():
                if tail is not None:
                    if not await self._from_tail(tail, response):
                        # Behind what the tail keeps: its own consumer, from its next event.
                        await tail.leave()
                        tail = None
                        sub = await self._consumer(self._resume_config())
                    continue
                assert sub is not None
                caught_up = await self._from_consumer(sub, config, response)
                if isinstance(caught_up, JetStreamContext.PullSubscription):
                    sub = caught_up  # recreated after a gap
                elif caught_up and shared and self.last_seq and (tail := _Tail.join(
                        self.request.app, self.js, self.last_seq + 1, may_start=False)
                ) is not None:
                    # Nothing pending: a replayed stream of every event moves to the tail
                    # when the tail holds its next event (a tail starts only at the end).
                    await _remove_consumer(self.js, sub)
                    sub = None
        except (ConnectionError, TimeoutError):
            log.info("sse client gone or not reading; stream closed", subject=self.subject,
                     last_event_id=self.last_seq)
        except Exception:
            # Headers are sent: a problem document cannot follow. Log and end the stream; the
            # client reconnects with Last-Event-ID.
            log.exception("sse stream failed", subject=self.subject)
        finally:
            if tail is not None:
                await tail.leave()
            if sub is not None:
                await _remove_consumer(self.js, sub)
        return response

    async def _idle(self, response: web.StreamResponse) -> bool:
        """Nothing new: keep the connection alive; False when the client is gone."""
        transport = self.request.transport
        if transport is None or transport.is_closing():
            return False
        if time.monotonic() - self.last_write >= KEEPALIVE_S:
            await asyncio.wait_for(response.write(b": keep-alive\n\n"), self.write_timeout_s)
            self.last_write = time.monotonic()
        return True

    async def _write(self, response: web.StreamResponse, data: bytes) -> None:
        # asyncio.timeout, not wait_for: no task per write (wait_for's was most of a stream's
        # CPU with 100 streams on the tail).
        async with asyncio.timeout(self.write_timeout_s):
            await response.write(data)
        self.last_write = time.monotonic()

    async def _from_tail(self, tail: _Tail, response: web.StreamResponse) -> bool:
        """Write what the tail has after this stream's last event, or wait for it; False when
        the tail no longer holds the next event (this stream fell behind it)."""
        start = self.last_seq + 1
        if start < tail.base:
            return False
        i = bisect.bisect_left(tail.seqs, start)
        if i < len(tail.seqs):
            last = tail.seqs[-1]
            await self._write(response, b"".join(tail.frames[i:]))
            self.last_seq = last
            return True
        arrived = tail.arrived
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(POLL_S):
                await arrived.wait()
        if not arrived.is_set() and not await self._idle(response):
            raise ConnectionError("client gone")
        return True

    async def _from_consumer(
        self, sub: JetStreamContext.PullSubscription, config: ConsumerConfig,
        response: web.StreamResponse,
    ) -> bool | JetStreamContext.PullSubscription:
        """One batch from this stream's own consumer: True when nothing was pending (caught up),
        a new subscription when a gap made it recreate the consumer."""
        try:
            msgs = await sub.fetch(batch=FETCH_BATCH, timeout=POLL_S)
        except TimeoutError:
            msgs = []
        if not msgs:  # nats-py may also answer an empty batch: nothing new yet
            if not await self._idle(response):
                raise ConnectionError("client gone")
            return True
        if msgs[0].metadata.sequence.consumer != self.last_consumer_seq + 1:
            log.warning("sse delivery gap; consumer recreated", subject=self.subject,
                        last_event_id=self.last_seq)
            await _remove_consumer(self.js, sub)
            return await self._consumer(self._resume_config() if self.last_seq else config)
        await self._write(response, b"".join(format_event(m) for m in msgs))
        self.last_seq = msgs[-1].metadata.sequence.stream
        self.last_consumer_seq = msgs[-1].metadata.sequence.consumer
        return False


class _Tail:
    """The gateway's one consumer of every event for its streams of every event at the live tail
    (see the module's docstring): it runs while a stream uses it, from the first user's next
    event on, and keeps each event's frame, by stream sequence, for :data:`TAIL_KEEP` events or
    more. Gap-free like a stream's own consumer: a consumer sequence that skips makes it
    recreate its consumer after the last event it holds; a NATS failure, after a pause."""

    def __init__(self, js: JetStreamContext, start: int) -> None:
        self.js = js
        self.base = start  # the first stream sequence a stream may ask of this tail
        self.seqs: list[int] = []
        self.frames: list[bytes] = []
        self.arrived = asyncio.Event()  # set (and replaced) when frames arrive
        self.users = 0
        self.next_seq = start  # the first event the tail has not pulled yet
        self.task: asyncio.Task[None] | None = None
        self.registry: dict[str, _Tail] = {}
        self.stopped = False

    @classmethod
    def join(cls, app: web.Application, js: JetStreamContext, start: int, *,
             may_start: bool = True) -> _Tail | None:
        """The app's tail, one more user, for a stream whose next event is ``start``: started
        there if the app has none (and ``may_start``); None if the tail no longer holds that
        event."""
        registry: dict[str, _Tail] = app[_TAIL]
        tail = registry.get("tail")
        if tail is None and not may_start:
            return None
        if tail is None:
            tail = registry["tail"] = cls(js, start)
            tail.registry = registry
            tail.task = asyncio.create_task(tail._run())
        elif start < tail.base:
            return None
        tail.users += 1
        return tail

    async def leave(self) -> None:
        self.users -= 1
        if self.users == 0:
            # The last stream left: the next one starts a new tail; this one's consumer is
            # removed (the task's finally) before the stream's response ends, as a stream's own.
            if self.registry.get("tail") is self:
                del self.registry["tail"]
            await self.stop()

    async def stop(self) -> None:
        """End the tail's task and wait for it. Cancelled again every second until it ends:
        on Python 3.11 a cancel can be lost inside nats-py's requests (their wait_for), and
        the flag ends the loop at its next pull anyway."""
        self.stopped = True
        while self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait([self.task], timeout=1.0)  # (a cancel of the caller propagates)

    async def _consumer(self) -> JetStreamContext.PullSubscription:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                opt_start_seq=self.next_seq, ack_policy=AckPolicy.NONE,
                                inactive_threshold=CONSUMER_INACTIVE_S, mem_storage=True)
        return await self.js.pull_subscribe(subjects.all_events(),
                                            stream=subjects.EVENTS_STREAM, config=config)

    async def _run(self) -> None:
        sub: JetStreamContext.PullSubscription | None = None
        consumer_seq = 0
        try:
            while not self.stopped:
                try:
                    if sub is None:
                        sub, consumer_seq = await self._consumer(), 0
                    try:
                        msgs = await sub.fetch(batch=FETCH_BATCH, timeout=POLL_S)
                    except TimeoutError:
                        continue
                except Exception:
                    # NATS went away or JetStream is electing: the streams wait (keep-alives
                    # go on), the tail resumes after the last event it holds.
                    log.warning("sse tail failed; consumer recreated", exc_info=True,
                                next_event_id=self.next_seq)
                    if sub is not None:
                        await _remove_consumer(self.js, sub)
                        sub = None
                    await asyncio.sleep(POLL_S)
                    continue
                if not msgs:
                    continue
                if msgs[0].metadata.sequence.consumer != consumer_seq + 1:
                    log.warning("sse tail delivery gap; consumer recreated",
                                next_event_id=self.next_seq)
                    await _remove_consumer(self.js, sub)
                    sub = None
                    continue
                consumer_seq = msgs[-1].metadata.sequence.consumer
                for msg in msgs:
                    self.seqs.append(msg.metadata.sequence.stream)
                    self.frames.append(format_event(msg))
                self.next_seq = self.seqs[-1] + 1
                if len(self.seqs) >= 2 * TAIL_KEEP:
                    self.base = self.seqs[TAIL_KEEP - 1] + 1
                    del self.seqs[:TAIL_KEEP], self.frames[:TAIL_KEEP]
                arrived, self.arrived = self.arrived, asyncio.Event()
                arrived.set()
        finally:
            if sub is not None:
                await _remove_consumer(self.js, sub)


async def _remove_consumer(js: JetStreamContext, sub: JetStreamContext.PullSubscription) -> None:
    """Unsubscribe and delete the ephemeral consumer now (the server would after its
    inactivity threshold): a closed stream leaves nothing behind."""
    with contextlib.suppress(Exception):
        consumer = (await sub.consumer_info()).name
        await sub.unsubscribe()
        await js.delete_consumer(subjects.EVENTS_STREAM, consumer)


async def _sse_ctx(app: web.Application) -> AsyncIterator[None]:
    app[_OPEN] = set()
    app[_TAIL] = {}
    yield
    tail = app[_TAIL].get("tail")
    if tail is not None:
        await tail.stop()


OPENAPI = OpenApiPart(tag="events", operations=(
    Operation(
        method="GET", path="/v1/events", summary="Events as Server-Sent Events",
        media_type="text/event-stream", errors=(404, 422, 503),
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
