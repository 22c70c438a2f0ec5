"""``lq events``: follow the event stream, one line per event (or one JSON object per line)."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from limiquantix.cli.context import Context
from limiquantix.cli.errors import EXIT_OK, ApiError
from limiquantix.cli.sizes import format_bytes, parse_duration
from limiquantix.cli.sse import EventStream, Message
from limiquantix.cli.waiting import fetch_vm
from limiquantix.common.events import (
    ConsoleSessionEnded,
    ConsoleSessionStarted,
    ImageProgress,
    ImageStateChanged,
    NodeStateChanged,
    VmActionFailed,
    VmDeleted,
    VmGuestReady,
    VmStateChanged,
)


def describe(event: object) -> str:
    """The human half of an event's line."""
    match event:
        case VmStateChanged():
            text = f"{event.name or event.vm_id}: {event.previous or '-'} -> {event.state}"
            if event.reason:
                text += f" ({event.reason})"
            if event.error:
                text += f" error: {event.error.message} ({event.error.code})"
            return text
        case VmGuestReady():
            seconds = event.guest.boot_seconds
            took = f" in {seconds:.1f}s" if seconds is not None else ""
            return f"{event.name or event.vm_id}: guest ready{took}"
        case VmActionFailed():
            return (f"{event.name or event.vm_id}: {event.action} failed: "
                    f"{event.error.message} ({event.error.code})")
        case VmDeleted():
            return f"{event.name or event.vm_id}: deleted"
        case NodeStateChanged():
            return f"node {event.node}: {'online' if event.online else 'offline'}"
        case ImageStateChanged():
            text = f"image {event.image_id}: {event.previous or '-'} -> {event.state}"
            return text + (f" ({event.reason})" if event.reason else "")
        case ImageProgress():
            where = f" on {event.node}" if event.node else ""
            total = f" / {format_bytes(event.bytes_total)}" if event.bytes_total else ""
            return f"image {event.image_id}{where}: {format_bytes(event.bytes_done)}{total}"
        case ConsoleSessionStarted():
            return f"console {event.vm_id}: session {event.session_id} opened by {event.user}"
        case ConsoleSessionEnded():
            return f"console {event.vm_id}: session {event.session_id} closed ({event.reason})"
    return ""


def line(message: Message) -> str:
    """``2026-11-25T18:00:01Z  #42  vm.state_changed  web-1: creating -> running``."""
    event = message.decoded()
    when = event.time.strftime("%Y-%m-%dT%H:%M:%SZ") if event is not None else ""
    text = describe(event) if event is not None else message.data
    return f"{when}  #{message.id}  {message.event}  {text}".strip()


def json_line(message: Message) -> str:
    raw: Any = message.raw()
    body = {"id": message.id, **raw} if isinstance(raw, dict) else {
        "id": message.id, "type": message.event, "data": raw}
    return msgspec.json.encode(body).decode()


def events(ctx: Context) -> int:
    args = ctx.args
    query: dict[str, Any] = {}
    if args.vm:
        query["vm"] = _vm_id(ctx, args.vm)
    if args.since:
        query["since"] = int(parse_duration(args.since))
    shown = 0
    with EventStream(ctx.client, query, last_event_id=args.after or "") as stream:
        for message in stream:
            ctx.print(json_line(message) if args.json else line(message))
            shown += 1
            if args.limit and shown >= args.limit:
                break
    return EXIT_OK


def _vm_id(ctx: Context, vm: str) -> str:
    """A name becomes the id (the stream filters on ids); a deleted VM's id passes unchanged,
    since its events stay in the stream. An unknown name is an error, not a silent wait."""
    record = fetch_vm(ctx.client, vm)
    if record is not None:
        return record.id
    try:
        uuid.UUID(vm)
    except ValueError:
        raise ApiError(404, "vm_not_found", f"no VM is named {vm!r}",
                       "Use a current VM name (lq vm list) or a VM id.") from None
    return vm
