"""Webhooks: HTTP receivers of events, as CloudEvents 1.0 JSON signed with HMAC-SHA256.

A webhook (``lq_webhooks``, key: its id) names a URL, the event types it wants (patterns over the
tags of :data:`limiquantix.common.events.Event`: ``vm.state_changed``, ``vm.*`` or ``*``) and a
secret. The secret lives only in that record, which only the gateway's NATS identity may read
(it delivers); it is never answered back after creation and never logged. Each attempt to
deliver is kept in ``lq_webhook_deliveries`` (key: the webhook id, the bucket's per-key history
is the bounded log). Design and delivery guarantees: docs/webhooks.md.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import typing
from datetime import datetime
from typing import Annotated

import msgspec

from limiquantix.common import subjects
from limiquantix.common.events import Event
from limiquantix.common.model import Model, RequestBody

SIGNATURE_HEADER = "X-Limiquantix-Signature"
CONTENT_TYPE = "application/cloudevents+json"
TEST_EVENT_TYPE = "webhook.test"
DELIVERY_LOG_SIZE = 50  # attempts kept per webhook (a KV per-key history: at most 64)

# Every event type tag, e.g. "vm.state_changed" (from the tagged union: never a second list).
EVENT_TYPES: tuple[str, ...] = tuple(
    str(t.__struct_config__.tag) for t in typing.get_args(Event)
)
# The categories the tags fall in ("vm", "node", ...): each is also its subject's second token.
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(t.split(".", 1)[0] for t in EVENT_TYPES))

EventPattern = Annotated[str, msgspec.Meta(
    pattern=r"^(\*|[a-z]+\.(\*|[a-z_]+))$", max_length=64,
    description="an event type (vm.state_changed), every type of a category (vm.*) or '*'")]
WebhookSecret = Annotated[str, msgspec.Meta(
    min_length=16, max_length=256,
    description="shared secret of the HMAC-SHA256 signature (16-256 characters); never shown "
                "again")]
WebhookUrl = Annotated[str, msgspec.Meta(min_length=1, max_length=2048,
                                         description="http(s) URL the events are POSTed to")]


class UnknownEventPattern(ValueError):
    """An event pattern names no known event type or category."""


def check_patterns(patterns: tuple[str, ...]) -> tuple[str, ...]:
    """The patterns, deduplicated and without those a wider one covers; ValueError
    (:class:`UnknownEventPattern`) for one that matches no known event type."""
    for pattern in patterns:
        if pattern == "*":
            continue
        category, _, kind = pattern.partition(".")
        if (kind == "*" and category not in CATEGORIES) or (
                kind != "*" and pattern not in EVENT_TYPES):
            raise UnknownEventPattern(
                f"{pattern!r} matches no event type (known: {', '.join(EVENT_TYPES)}; or "
                f"{', '.join(c + '.*' for c in CATEGORIES)}, or '*')")
    if "*" in patterns:
        return ("*",)
    wide = {p.partition(".")[0] for p in patterns if p.endswith(".*")}
    kept = [p for p in patterns if p.endswith(".*") or p.partition(".")[0] not in wide]
    return tuple(dict.fromkeys(kept))


def matches(patterns: tuple[str, ...], event_type: str) -> bool:
    """Whether an event of ``event_type`` is wanted by ``patterns``."""
    category = event_type.partition(".")[0]
    return any(p in ("*", event_type, f"{category}.*") for p in patterns)


def filter_subjects(patterns: tuple[str, ...]) -> list[str]:
    """The ``LQ_EVENTS`` subjects of checked, non-overlapping ``patterns`` (a consumer's filters:
    the server hands over only what the webhook wants)."""
    out = []
    for pattern in patterns:
        if pattern == "*":
            return [subjects.all_events()]
        category, _, kind = pattern.partition(".")
        out.append(f"{subjects.PREFIX}.evt.{category}." + (">" if kind == "*" else f"*.{kind}"))
    return out


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=<hex HMAC-SHA256 of the body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class CreateWebhookRequest(RequestBody, frozen=True, kw_only=True):
    """Body of ``POST /v1/webhooks``."""

    url: WebhookUrl
    events: Annotated[tuple[EventPattern, ...], msgspec.Meta(min_length=1, max_length=32)]
    secret: WebhookSecret


class WebhookRecord(Model, frozen=True, kw_only=True):
    """A stored webhook (``lq_webhooks``): the only place its secret is kept."""

    id: str
    url: str
    events: tuple[str, ...]
    secret: str
    created_at: datetime
    created_by: str = ""


class WebhookInfo(Model, frozen=True, kw_only=True):
    """A webhook as answered: never its secret."""

    id: str
    url: str
    events: tuple[str, ...]
    created_at: datetime
    created_by: str = ""


class WebhookList(Model, frozen=True, kw_only=True):
    webhooks: tuple[WebhookInfo, ...] = ()


class Outcome(enum.StrEnum):
    """What one delivery attempt came to."""

    DELIVERED = "delivered"  # the receiver answered 2xx
    RETRYING = "retrying"  # failed; tried again after a backoff
    GAVE_UP = "gave_up"  # failed, and retried for LQ_WEBHOOK_GIVE_UP_S: dropped
    FAILED = "failed"  # a test delivery that failed (never retried)


class DeliveryAttempt(Model, frozen=True, kw_only=True):
    """One attempt to deliver one event to one webhook."""

    event_id: str  # the CloudEvent id: the event's LQ_EVENTS sequence ("test-..." for tests)
    event_type: str
    subject: str = ""
    attempt: int = 1
    at: datetime
    duration_ms: float = 0.0
    status_code: int | None = None  # the receiver's HTTP status, none when it was not reached
    outcome: Outcome
    error: str = ""
    retry_in_s: float | None = None


class DeliveryLog(Model, frozen=True, kw_only=True):
    """The last attempts (:data:`DELIVERY_LOG_SIZE` at most), newest first."""

    deliveries: tuple[DeliveryAttempt, ...] = ()


class CloudEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A CloudEvents 1.0 event in structured JSON mode (what a receiver gets as the body)."""

    specversion: str = "1.0"
    id: str
    source: str
    type: str
    time: str
    subject: str = ""
    datacontenttype: str = "application/json"
    data: msgspec.Raw


class EventHead(msgspec.Struct, frozen=True, kw_only=True):
    """What a delivery reads of an event: its tag, time and whom it is about (unknown fields
    and event types from newer services pass through untouched in ``data``)."""

    type: str = ""
    time: str = ""
    vm_id: str = ""
    image_id: str = ""
    node: str = ""


def event_subject(head: EventHead) -> str:
    """The CloudEvent ``subject``: the VM (image, node) the event is about."""
    return head.vm_id or head.image_id or head.node


webhook_encoder = msgspec.json.Encoder()
webhook_decoder = msgspec.json.Decoder(WebhookRecord)
attempt_decoder = msgspec.json.Decoder(DeliveryAttempt)
head_decoder = msgspec.json.Decoder(EventHead)
