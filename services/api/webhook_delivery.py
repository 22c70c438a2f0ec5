"""Webhook deliveries, run by every gateway replica (design and guarantees: docs/webhooks.md).

Each webhook has one durable pull consumer on ``LQ_EVENTS`` (``webhook-<id>``, filtered to the
event types it wants, created with the webhook) shared by every replica: the server hands each
event to one of them. ``max_ack_pending=1`` makes the order strict per webhook, across replicas:
the next event is handed out only once this one is acknowledged (delivered, or given up). A
failed attempt is NAKed with a delay (exponential backoff capped at ``LQ_WEBHOOK_RETRY_MAX_S``),
so no replica holds a message while it waits and a replica that dies mid-attempt only delays the
event by the ack wait. The retry waits are a pure function of the attempt number the server
counts, so whichever replica makes the attempt knows when the event has been retried for
``LQ_WEBHOOK_GIVE_UP_S`` and gives up (logged ``gave_up``, then acknowledged).

Every attempt goes to the webhook's delivery log (``lq_webhook_deliveries``). Secrets are read
from the record to sign and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime

import aiohttp
import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from limiquantix.common import outbound, subjects
from limiquantix.common.errors import LimiquantixError
from limiquantix.common.kv_records import KvRecords
from limiquantix.common.kv_view import KvView
from limiquantix.common.model import utcnow
from limiquantix.common.settings import Settings
from limiquantix.common.webhooks import (
    CONTENT_TYPE,
    SIGNATURE_HEADER,
    TEST_EVENT_TYPE,
    CloudEvent,
    DeliveryAttempt,
    Outcome,
    WebhookRecord,
    event_subject,
    head_decoder,
    sign,
    webhook_decoder,
)

log = structlog.get_logger()

FIRST_RETRY_S = 0.5
FETCH_WAIT_S = 5.0  # one pull request waits this long for an event
WORKER_RESTART_S = 1.0  # a worker whose fetch failed (NATS away, consumer gone) tries again
ACK_WAIT_MARGIN_S = 20.0  # an attempt's ack wait: the receiver's timeout plus this
SOURCE = "/limiquantix/events"
MAX_ERROR_CHARS = 300

_cloud_encoder = msgspec.json.Encoder()


def retry_delay(attempt: int, *, cap_s: float) -> float:
    """The wait after failed attempt ``attempt`` (1-based): 0.5 s doubling, capped."""
    return min(cap_s, FIRST_RETRY_S * 2.0 ** min(attempt - 1, 32))


def waited(attempts: int, *, cap_s: float) -> float:
    """The retry waits scheduled before attempt ``attempts + 1``, added up."""
    return sum(retry_delay(n, cap_s=cap_s) for n in range(1, attempts + 1))


def webhook_policy(settings: Settings) -> outbound.OutboundPolicy:
    """The outbound address policy of webhook URLs (``LQ_WEBHOOK_ALLOWED_NETWORKS``)."""
    return outbound.OutboundPolicy(
        allowed_networks=outbound.parse_networks(settings.webhook_allowed_networks))


def consumer_config(webhook_id: str, filters: list[str], *, timeout_s: float) -> ConsumerConfig:
    """The durable consumer that feeds one webhook: new events only, one in flight."""
    many = len(filters) > 1
    return ConsumerConfig(
        durable_name=subjects.webhook_consumer(webhook_id),
        deliver_policy=DeliverPolicy.NEW, ack_policy=AckPolicy.EXPLICIT,
        filter_subject=None if many else filters[0], filter_subjects=filters if many else None,
        max_ack_pending=1, max_deliver=-1, ack_wait=timeout_s + ACK_WAIT_MARGIN_S,
    )


def cloud_event(msg: Msg) -> tuple[bytes, str, str]:
    """The CloudEvent body of a stream message, its type and its subject."""
    try:
        head = head_decoder.decode(msg.data)
    except msgspec.DecodeError:
        head = None
    meta = msg.metadata
    event_type = (head.type if head and head.type else
                  ".".join(msg.subject.split(".")[2:3] + msg.subject.split(".")[-1:]))
    stamp = head.time if head and head.time else (
        meta.timestamp or datetime.now(UTC)).isoformat()
    subject = event_subject(head) if head else ""
    body = _cloud_encoder.encode(CloudEvent(
        id=str(meta.sequence.stream), source=SOURCE, type=event_type, time=stamp,
        subject=subject, data=msgspec.Raw(msg.data),
    ))
    return body, event_type, subject


def test_event(webhook_id: str) -> tuple[bytes, str]:
    """A ``webhook.test`` CloudEvent and its id (not from the stream: never retried)."""
    event_id = f"test-{uuid.uuid4().hex}"
    now = utcnow().isoformat()
    data = msgspec.json.encode({"type": TEST_EVENT_TYPE, "time": now, "webhook_id": webhook_id})
    body = _cloud_encoder.encode(CloudEvent(
        id=event_id, source=SOURCE, type=TEST_EVENT_TYPE, time=now, subject=webhook_id,
        data=msgspec.Raw(data),
    ))
    return body, event_id


class Sender:
    """POSTs signed CloudEvents through the outbound address policy; one HTTP session."""

    def __init__(self, settings: Settings, deliveries: KeyValue) -> None:
        self._policy = webhook_policy(settings)
        self._timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout_s)
        self._deliveries = KvRecords(deliveries, DeliveryAttempt)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, record: WebhookRecord, body: bytes) -> tuple[int | None, str, float]:
        """One attempt: (HTTP status or None, error or '', duration in ms)."""
        if self._session is None:
            self._session = outbound.client_session(self._policy, timeout=self._timeout)
        started = time.monotonic()
        status: int | None = None
        error = ""
        try:
            self._policy.check_url(record.url)  # a literal IP never reaches the resolver
            async with self._session.post(record.url, data=body, allow_redirects=False, headers={
                "Content-Type": CONTENT_TYPE, SIGNATURE_HEADER: sign(record.secret, body),
                "User-Agent": "limiquantix-webhooks",
            }) as response:
                status = response.status
                if not 200 <= status < 300:
                    text = (await response.content.read(MAX_ERROR_CHARS)).decode(errors="replace")
                    error = f"HTTP {status}" + (f": {text}" if text.strip() else "")
                    if 300 <= status < 400:
                        error = f"HTTP {status}: redirects are not followed"
        except LimiquantixError as exc:
            error = f"{exc.code}: {exc.message}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return status, error[:MAX_ERROR_CHARS], (time.monotonic() - started) * 1000.0

    async def record(self, webhook_id: str, attempt: DeliveryAttempt) -> None:
        """Append to the webhook's delivery log (the bucket keeps the last attempts)."""
        try:
            await self._deliveries.put(webhook_id, attempt)
        except Exception as exc:  # the log is best effort: the delivery itself went on
            log.warning("webhook delivery log write failed", webhook_id=webhook_id,
                        error=str(exc))


class WebhookView(KvView[WebhookRecord]):
    """The watched ``lq_webhooks``; a change starts or stops that webhook's worker."""

    def __init__(self, js: JetStreamContext, deliverer: Deliverer) -> None:
        super().__init__(js, subjects.WEBHOOKS_BUCKET, webhook_decoder.decode)
        self._deliverer = deliverer

    def put(self, record: WebhookRecord) -> None:
        """A webhook this replica just created: seen at once, before the watch echoes it."""
        self._apply(record.id, record, 0, 0.0)

    def forget(self, webhook_id: str) -> None:
        """A webhook this replica just deleted: its worker stops now."""
        self._remove(webhook_id, 1 << 62)

    def _on_change(self, key: str, old: WebhookRecord | None, new: WebhookRecord | None) -> None:
        if old == new:
            return  # the watch echoing our own write: the worker runs already
        if old is not None:
            self._deliverer.stop_worker(key)
        if new is not None:
            self._deliverer.start_worker(new)


class Deliverer:
    """This replica's share of every webhook's deliveries: one worker task per webhook."""

    def __init__(self, js: JetStreamContext, settings: Settings, sender: Sender) -> None:
        self._js = js
        self._settings = settings
        self.sender = sender
        self._workers: dict[str, asyncio.Task[None]] = {}
        self.view = WebhookView(js, self)

    async def start(self) -> None:
        await self.view.start()

    async def stop(self) -> None:
        await self.view.stop()
        for webhook_id in list(self._workers):
            self.stop_worker(webhook_id)
        tasks = list(self._workers.values())
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.sender.close()

    def start_worker(self, record: WebhookRecord) -> None:
        task = asyncio.get_running_loop().create_task(
            self._work(record), name=f"webhook-{record.id}")
        self._workers[record.id] = task
        task.add_done_callback(lambda t: self._forget(record.id, t))

    def stop_worker(self, webhook_id: str) -> None:
        task = self._workers.get(webhook_id)
        if task is not None:
            task.cancel()

    def _forget(self, webhook_id: str, task: asyncio.Task[None]) -> None:
        if self._workers.get(webhook_id) is task:
            del self._workers[webhook_id]

    async def _work(self, record: WebhookRecord) -> None:
        """Pull this webhook's events one at a time, for as long as the webhook exists."""
        durable = subjects.webhook_consumer(record.id)
        bound = log.bind(webhook_id=record.id)
        while True:
            try:
                sub = await self._js.pull_subscribe_bind(durable, stream=subjects.EVENTS_STREAM)
                try:
                    while True:
                        try:
                            msgs = await sub.fetch(1, timeout=FETCH_WAIT_S)
                        except TimeoutError:
                            continue
                        for msg in msgs:
                            await self._deliver(record, msg)
                finally:
                    with contextlib.suppress(Exception):  # the connection may be closing
                        await sub.unsubscribe()
            except asyncio.CancelledError:
                raise
            except NotFoundError:
                # Deleted (the record's deletion stops this worker any moment) or not yet made.
                bound.debug("webhook consumer not found")
            except Exception as exc:
                bound.warning("webhook worker failed; restarting", error=str(exc),
                              error_type=type(exc).__name__)
            await asyncio.sleep(WORKER_RESTART_S)

    async def _deliver(self, record: WebhookRecord, msg: Msg) -> None:
        body, event_type, subject = cloud_event(msg)
        attempt = msg.metadata.num_delivered
        try:
            status, error, duration_ms = await self.sender.post(record, body)
        except asyncio.CancelledError:
            # This replica is stopping: hand the event back now rather than after the ack wait.
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        cap = self._settings.webhook_retry_max_s
        outcome, delay = Outcome.DELIVERED, None
        if error:
            # The waits already behind this attempt: the event was retried for that long.
            gave_up = waited(attempt - 1, cap_s=cap) >= self._settings.webhook_give_up_s
            outcome = Outcome.GAVE_UP if gave_up else Outcome.RETRYING
            delay = None if gave_up else retry_delay(attempt, cap_s=cap)
        await self.sender.record(record.id, DeliveryAttempt(
            event_id=str(msg.metadata.sequence.stream), event_type=event_type, subject=subject,
            attempt=attempt, at=utcnow(), duration_ms=round(duration_ms, 3), status_code=status,
            outcome=outcome, error=error, retry_in_s=delay,
        ))
        if delay is None:
            if outcome is Outcome.GAVE_UP:
                log.warning("webhook delivery given up", webhook_id=record.id,
                            event_id=msg.metadata.sequence.stream, attempts=attempt, error=error)
            await msg.ack()
        else:
            log.info("webhook delivery failed; retrying", webhook_id=record.id,
                     event_id=msg.metadata.sequence.stream, attempt=attempt, error=error,
                     retry_in_s=delay)
            await msg.nak(delay=delay)

    async def send_test(self, record: WebhookRecord) -> DeliveryAttempt:
        """Deliver one ``webhook.test`` event now, once; logged like any attempt."""
        body, event_id = test_event(record.id)
        status, error, duration_ms = await self.sender.post(record, body)
        attempt = DeliveryAttempt(
            event_id=event_id, event_type=TEST_EVENT_TYPE, subject=record.id, at=utcnow(),
            duration_ms=round(duration_ms, 3), status_code=status,
            outcome=Outcome.FAILED if error else Outcome.DELIVERED, error=error,
        )
        await self.sender.record(record.id, attempt)
        return attempt
