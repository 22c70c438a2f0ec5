"""Publishing commands to node agents and events to subscribers over JetStream."""

from __future__ import annotations

from nats.js import JetStreamContext

from limiquantix.common import subjects
from limiquantix.common.commands import Command, command_encoder
from limiquantix.common.events import Event, event_encoder, event_subject


async def send_command(js: JetStreamContext, node: str, command: Command) -> None:
    """Queue ``command`` for ``node``; ``command_id`` dedupes a retried publish (Nats-Msg-Id)."""
    await js.publish(
        subjects.node_commands(node), command_encoder.encode(command),
        stream=subjects.COMMANDS_STREAM, headers={"Nats-Msg-Id": command.command_id},
    )


async def publish_event(js: JetStreamContext, event: Event) -> None:
    """Record ``event`` in the events stream (its sequence becomes the SSE id)."""
    await js.publish(event_subject(event), event_encoder.encode(event),
                     stream=subjects.EVENTS_STREAM)
