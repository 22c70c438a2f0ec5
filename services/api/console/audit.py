"""Console sessions as events on the JetStream events stream: the audit trail of who saw what."""

from __future__ import annotations

import structlog
from nats.js import JetStreamContext

from limiquantix.common.events import (
    ConsoleSessionEnded,
    ConsoleSessionStarted,
    event_encoder,
    event_subject,
)

log = structlog.get_logger()

PUBLISH_TIMEOUT_S = 5.0


async def publish(js: JetStreamContext, event: ConsoleSessionStarted | ConsoleSessionEnded) -> bool:
    """Publish one audit event; a failure is logged (with the event) and never ends a session."""
    try:
        await js.publish(
            event_subject(event), event_encoder.encode(event), timeout=PUBLISH_TIMEOUT_S
        )
    except Exception as exc:
        log.error(
            "console audit event not published", error=repr(exc), event_type=type(event).__name__,
            session_id=event.session_id, vm_id=event.vm_id,
        )
        return False
    return True
