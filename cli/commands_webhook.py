"""``lq webhook create|list|show|delete|test|deliveries``: HTTP receivers of events
(docs/webhooks.md)."""

from __future__ import annotations

import os
import secrets

from limiquantix.cli.client import seg
from limiquantix.cli.context import Context
from limiquantix.cli.errors import EXIT_OK
from limiquantix.cli.output import print_json_if_asked, table
from limiquantix.common.webhooks import DeliveryAttempt, DeliveryLog, WebhookInfo, WebhookList

SECRET_ENV = "LQ_WEBHOOK_SECRET"


def _secret(ctx: Context) -> tuple[str, bool]:
    """The secret from --secret-file, LQ_WEBHOOK_SECRET, or a new one (then shown once)."""
    if ctx.args.secret_file:
        with open(ctx.args.secret_file) as f:
            return f.read().strip(), False
    given = os.environ.get(SECRET_ENV, "")
    return (given, False) if given else (secrets.token_urlsafe(32), True)


def create(ctx: Context) -> int:
    """Create; a generated secret is printed once on stdout (alone), the rest to stderr."""
    secret, generated = _secret(ctx)
    hook = ctx.client.post("/v1/webhooks", WebhookInfo, json_body={
        "url": ctx.args.receiver_url, "events": ctx.args.events or ["*"], "secret": secret})
    if not print_json_if_asked(ctx, hook):
        ctx.print(secret if generated else hook.id)
    ctx.warn(f"webhook {hook.id} created for {', '.join(hook.events)}"
             + ("; its secret (above) is shown only now: give it to the receiver"
                if generated else ""))
    return EXIT_OK


def list_webhooks(ctx: Context) -> int:
    hooks = ctx.client.get("/v1/webhooks", WebhookList).webhooks
    if print_json_if_asked(ctx, hooks):
        return EXIT_OK
    rows = [[h.id, h.url, ",".join(h.events), h.created_at.strftime("%Y-%m-%d %H:%M")]
            for h in hooks]
    ctx.print(table(["ID", "URL", "EVENTS", "CREATED"], rows))
    return EXIT_OK


def show(ctx: Context) -> int:
    hook = ctx.client.get(f"/v1/webhooks/{seg(ctx.args.webhook)}", WebhookInfo)
    if print_json_if_asked(ctx, hook):
        return EXIT_OK
    ctx.print(table(["FIELD", "VALUE"], [["id", hook.id], ["url", hook.url],
                                         ["events", ",".join(hook.events)],
                                         ["created", hook.created_at.isoformat()],
                                         ["by", hook.created_by or "-"]]))
    return EXIT_OK


def delete(ctx: Context) -> int:
    for ref in ctx.args.webhooks:
        ctx.client.request("DELETE", f"/v1/webhooks/{seg(ref)}")
        ctx.print(f"{ref}: deleted")
    return EXIT_OK


def _rows(attempts: tuple[DeliveryAttempt, ...]) -> list[list[str]]:
    return [[a.at.strftime("%H:%M:%S"), a.event_id, a.event_type, str(a.attempt), a.outcome,
             "-" if a.status_code is None else str(a.status_code), f"{a.duration_ms:.0f}",
             a.error or "-"] for a in attempts]


_HEADERS = ["TIME", "EVENT", "TYPE", "TRY", "OUTCOME", "HTTP", "MS", "ERROR"]


def test(ctx: Context) -> int:
    """Deliver a webhook.test event now; exit 1 when the receiver did not take it."""
    attempt = ctx.client.post(f"/v1/webhooks/{seg(ctx.args.webhook)}/test", DeliveryAttempt)
    if not print_json_if_asked(ctx, attempt):
        ctx.print(table(_HEADERS, _rows((attempt,))))
    return EXIT_OK if attempt.outcome == "delivered" else 1


def deliveries(ctx: Context) -> int:
    log = ctx.client.get(f"/v1/webhooks/{seg(ctx.args.webhook)}/deliveries", DeliveryLog)
    if print_json_if_asked(ctx, log.deliveries):
        return EXIT_OK
    ctx.print(table(_HEADERS, _rows(log.deliveries)))
    return EXIT_OK
