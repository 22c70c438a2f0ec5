"""Errors of the webhook routes; each has a stable ``code`` and a hint (see common.errors)."""

from __future__ import annotations

from limiquantix.common.errors import InvalidRequest, NotFound


class WebhookNotFound(NotFound):
    """No webhook has this id."""

    code = "webhook_not_found"
    default_hint = "List webhooks with GET /v1/webhooks (lq webhook list)."


class UnknownEventType(InvalidRequest):
    """An ``events`` pattern matches no event type."""

    code = "unknown_event_type"
    default_hint = ("Use event type tags such as vm.state_changed, a category such as vm.*, "
                    "or '*' (GET /v1/openapi.json lists them).")


WEBHOOK_URL_HINT = (
    "Use a public http(s) URL without credentials. Loopback, private and link-local receivers "
    "need their network in LQ_WEBHOOK_ALLOWED_NETWORKS on the API."
)
