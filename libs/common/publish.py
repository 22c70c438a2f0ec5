"""The one way to publish: events (``publish_event``) and node commands (``send_command``) to
JetStream, a rejected command to its node's dead-letter subject (``dead_letter``, core NATS).

One timeout, the stream always named (a subject outside it fails instead of going nowhere), and
one failure policy chosen by the caller:

- default: a NATS failure raises (``nats.errors.Error``). Use it when the event is part of the
  work's result (a VM's state change: subscribers must see what the record says).
- ``best_effort=True``: the failure is logged and swallowed. Use it when the event only reports
  on work that must not fail because of it (console audit, image progress, image state).

Through a JetStream leader election (seconds, in a cluster) both wait rather than fail: a
command (deduped by its ``command_id``) and an event (deduped by its ``msg_id``, one of its own
when the caller gives none) are retried after any transient failure for up to
``ELECTION_RETRY_S``; a best-effort event is not retried. Longer outages are the caller's
(``common.retry.retry_transient``): pass the same ``msg_id`` on every attempt and JetStream
stores the event once (the stream's duplicate window).
"""

from __future__ import annotations

import uuid

import nats.errors
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext

from limiquantix.common import metrics, retry, subjects
from limiquantix.common.commands import Command, command_encoder
from limiquantix.common.events import Event, event_encoder, event_subject

log = structlog.get_logger()

# Per publish: JetStream's acknowledgement normally comes in ~1 ms; 5 s means NATS is unwell.
PUBLISH_TIMEOUT_S = 5.0
# A stream's leader election in a three-server cluster took 4-6 s when its leader was killed
# (tests/fleet/test_jetstream_failover.py); a publish waits that out rather than fail.
ELECTION_RETRY_S = 10.0


async def publish_event(js: JetStreamContext, event: Event, *, best_effort: bool = False,
                        msg_id: str | None = None) -> None:
    """Store ``event`` in the events stream (its sequence becomes the SSE id).

    ``best_effort``: log a NATS failure instead of raising it. ``msg_id``: JetStream's
    ``Nats-Msg-Id``, for a caller that retries the same event.
    """
    subject = event_subject(event)
    if not msg_id and not best_effort:
        # Its own id, so a retry after a timeout (stored or not, nobody knows) stores it once.
        msg_id = uuid.uuid4().hex
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    kind = str(type(event).__struct_config__.tag)

    async def publish() -> None:
        await js.publish(subject, event_encoder.encode(event), timeout=PUBLISH_TIMEOUT_S,
                         stream=subjects.EVENTS_STREAM, headers=headers)

    try:
        if best_effort:
            await publish()
        else:
            # Through a leader election, deduped by the msg_id.
            await retry.retry_transient(publish, what="event publish",
                                        deadline_s=ELECTION_RETRY_S, subject=subject)
    except nats.errors.Error as exc:
        metrics.EVENT_PUBLISH_FAILURES.labels(kind, str(best_effort).lower()).inc()
        if not best_effort:
            raise
        log.warning("event not published", event_type=type(event).__name__, subject=subject,
                    error=repr(exc), vm_id=getattr(event, "vm_id", None))
    else:
        metrics.EVENTS_PUBLISHED.labels(kind).inc()


async def send_command(js: JetStreamContext, node: str, command: Command) -> None:
    """Queue ``command`` for ``node``; ``command_id`` dedupes a retried publish (Nats-Msg-Id),
    so transient failures (a leader election) are retried for up to ``ELECTION_RETRY_S``."""
    async def publish() -> None:
        await js.publish(
            subjects.node_commands(node), command_encoder.encode(command),
            timeout=PUBLISH_TIMEOUT_S, stream=subjects.COMMANDS_STREAM,
            headers={"Nats-Msg-Id": command.command_id},
        )

    await retry.retry_transient(publish, what="command publish", deadline_s=ELECTION_RETRY_S,
                                node=node, command_id=command.command_id)


async def dead_letter(nc: Client, node: str, data: bytes, *, reason: str, stream_seq: int,
                      rejected: int) -> None:
    """Republish a command the node terminated on ``lq.dlq.cmd.<node>`` (core NATS: kept by
    whoever listens), its payload untouched; the reason as one header line of <= 300 chars."""
    await nc.publish(subjects.node_dead_letters(node), data, headers={
        "Lq-Reason": " ".join(reason.split())[:300], "Lq-Stream-Seq": str(stream_seq),
        "Lq-Rejected-Count": str(rejected)})
