"""``/v1/webhooks``: HTTP receivers of events (admin and operator manage them, viewers list).

``POST`` checks the URL against the webhook address policy (``LQ_WEBHOOK_ALLOWED_NETWORKS``;
the host is resolved and every address checked, as for image imports), checks the event patterns
against the known event types, creates the webhook's durable consumer on ``LQ_EVENTS`` (events
from then on are kept for it, whether its receiver is up or not) and then the record, which
holds the secret. No answer ever carries the secret. Deliveries: webhook_delivery.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator

from aiohttp import web
from nats.js.errors import NotFoundError

from limiquantix.api import app_keys
from limiquantix.api.auth import principal_of
from limiquantix.api.http_json import decode_body, json_response
from limiquantix.api.openapi import OpenApiPart, Operation
from limiquantix.api.webhook_delivery import (
    Deliverer,
    Sender,
    consumer_config,
    webhook_policy,
)
from limiquantix.api.webhook_errors import WEBHOOK_URL_HINT, UnknownEventType, WebhookNotFound
from limiquantix.common import nats_client, subjects
from limiquantix.common.kv_records import KvRecords
from limiquantix.common.model import utcnow
from limiquantix.common.outbound import OutboundRefused
from limiquantix.common.webhooks import (
    CreateWebhookRequest,
    DeliveryAttempt,
    DeliveryLog,
    UnknownEventPattern,
    WebhookInfo,
    WebhookList,
    WebhookRecord,
    check_patterns,
    filter_subjects,
)


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookStores:
    """The gateway's two webhook buckets: the records and the delivery logs."""

    webhooks: KvRecords[WebhookRecord]
    deliveries: KvRecords[DeliveryAttempt]


DELIVERER = web.AppKey("webhook_deliverer", Deliverer)
STORES = web.AppKey("webhook_stores", WebhookStores)
_ID_LENGTH = 32


def _info(record: WebhookRecord) -> WebhookInfo:
    return WebhookInfo(id=record.id, url=record.url, events=record.events,
                       created_at=record.created_at, created_by=record.created_by)


async def _check_url(request: web.Request, url: str) -> None:
    """Refuse (422) a URL the deliverer would refuse: scheme, credentials, every address."""
    policy = webhook_policy(request.app[app_keys.SETTINGS])
    try:
        host = policy.check_url(url)
        await policy.resolve(host)
    except OutboundRefused as exc:
        # Same checks as imports, but the setting that opens a network is the webhooks' own.
        raise type(exc)(exc.message, hint=WEBHOOK_URL_HINT, **exc.details) from None


def _record(request: web.Request) -> WebhookRecord:
    webhook_id = request.match_info["id"]
    record = None
    if len(webhook_id) == _ID_LENGTH and webhook_id.isalnum():
        record = request.app[DELIVERER].view.get(webhook_id)
    if record is None:
        raise WebhookNotFound(f"no webhook with id {webhook_id!r}", id=webhook_id)
    return record


async def create_webhook(request: web.Request) -> web.Response:
    """POST /v1/webhooks."""
    body = await decode_body(request, CreateWebhookRequest)
    try:
        patterns = check_patterns(body.events)
    except UnknownEventPattern as exc:
        raise UnknownEventType(str(exc), events=list(body.events)) from None
    await _check_url(request, body.url)
    settings = request.app[app_keys.SETTINGS]
    js = request.app[app_keys.JETSTREAM]
    webhook_id = uuid.uuid4().hex
    record = WebhookRecord(id=webhook_id, url=body.url, events=patterns, secret=body.secret,
                           created_at=utcnow(), created_by=principal_of(request).name)
    # The consumer first: from here on every matching event is kept for this webhook.
    await js.add_consumer(subjects.EVENTS_STREAM, consumer_config(
        webhook_id, filter_subjects(patterns), timeout_s=settings.webhook_timeout_s))
    try:
        await request.app[STORES].webhooks.create(webhook_id, record)
    except BaseException:
        with contextlib.suppress(Exception):
            await js.delete_consumer(subjects.EVENTS_STREAM, subjects.webhook_consumer(webhook_id))
        raise
    # This replica's view sees it now (the watch would, a moment later).
    request.app[DELIVERER].view.put(record)
    return json_response(_info(record), status=201, headers={
        "Location": f"/v1/webhooks/{webhook_id}"})


async def list_webhooks(request: web.Request) -> web.Response:
    """GET /v1/webhooks."""
    records = request.app[DELIVERER].view.values()
    return json_response(WebhookList(webhooks=tuple(
        _info(r) for r in sorted(records, key=lambda r: (r.created_at, r.id)))))


async def show_webhook(request: web.Request) -> web.Response:
    """GET /v1/webhooks/{id}."""
    return json_response(_info(_record(request)))


async def delete_webhook(request: web.Request) -> web.Response:
    """DELETE /v1/webhooks/{id}: no delivery after this answer; its log goes too."""
    record = _record(request)
    js = request.app[app_keys.JETSTREAM]
    stores = request.app[STORES]
    await stores.webhooks.purge(record.id)
    request.app[DELIVERER].view.forget(record.id)
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(subjects.EVENTS_STREAM, subjects.webhook_consumer(record.id))
    await stores.deliveries.purge(record.id)
    return web.Response(status=204)


async def test_webhook(request: web.Request) -> web.Response:
    """POST /v1/webhooks/{id}/test: one ``webhook.test`` delivery now; its outcome."""
    record = _record(request)
    attempt = await request.app[DELIVERER].send_test(record)
    return json_response(attempt)


async def webhook_deliveries(request: web.Request) -> web.Response:
    """GET /v1/webhooks/{id}/deliveries: the last attempts, newest first."""
    record = _record(request)
    attempts = await request.app[STORES].deliveries.history(record.id)
    return json_response(DeliveryLog(deliveries=tuple(reversed(attempts))))


async def _deliverer_ctx(app: web.Application) -> AsyncIterator[None]:
    js = app[app_keys.JETSTREAM]
    deliveries_kv = await nats_client.bucket(js, subjects.WEBHOOK_DELIVERIES_BUCKET)
    app[STORES] = WebhookStores(
        webhooks=KvRecords(await nats_client.bucket(js, subjects.WEBHOOKS_BUCKET), WebhookRecord),
        deliveries=KvRecords(deliveries_kv, DeliveryAttempt))
    deliverer = Deliverer(js, app[app_keys.SETTINGS],
                          Sender(app[app_keys.SETTINGS], deliveries_kv))
    app[DELIVERER] = deliverer
    await deliverer.start()
    try:
        yield
    finally:
        await deliverer.stop()


OPENAPI = OpenApiPart(tag="webhooks", operations=(
    Operation(method="POST", path="/v1/webhooks",
              summary="Create a webhook (operator): events POSTed to a URL as signed CloudEvents",
              body=CreateWebhookRequest, response=WebhookInfo, status=201, errors=(403, 422),
              description="Deliveries are CloudEvents 1.0 JSON (structured mode; `id` is the "
                          "event's id) signed with `X-Limiquantix-Signature: sha256=<hex "
                          "HMAC-SHA256 of the body with the secret>`, in order per webhook, "
                          "retried with backoff. `events` are event type tags, `vm.*`-style "
                          "categories or `*`. The secret is never shown again. See "
                          "docs/webhooks.md."),
    Operation(method="GET", path="/v1/webhooks", summary="Webhooks (no secrets)",
              response=WebhookList),
    Operation(method="GET", path="/v1/webhooks/{id}", summary="One webhook (no secret)",
              response=WebhookInfo, errors=(404,)),
    Operation(method="DELETE", path="/v1/webhooks/{id}",
              summary="Delete a webhook (operator); undelivered events are dropped",
              status=204, errors=(403, 404)),
    Operation(method="POST", path="/v1/webhooks/{id}/test",
              summary="Deliver a `webhook.test` event now, once (operator); the attempt",
              response=DeliveryAttempt, errors=(403, 404)),
    Operation(method="GET", path="/v1/webhooks/{id}/deliveries",
              summary="The webhook's last delivery attempts, newest first",
              response=DeliveryLog, errors=(404,)),
))


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/webhooks", create_webhook)
    app.router.add_get("/v1/webhooks", list_webhooks)
    app.router.add_get("/v1/webhooks/{id}", show_webhook)
    app.router.add_delete("/v1/webhooks/{id}", delete_webhook)
    app.router.add_post("/v1/webhooks/{id}/test", test_webhook)
    app.router.add_get("/v1/webhooks/{id}/deliveries", webhook_deliveries)
    app.cleanup_ctx.append(_deliverer_ctx)
