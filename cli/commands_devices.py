"""``lq vm resize``, ``lq vm disk add|list|remove``, ``lq vm media insert|eject``
(docs/day2.md).

Each asks the API (202, the record as written) and, with ``--wait``, follows the VM's events
until the node reports the change done (``vm.resized``, ``vm.disk_attached``, ...) or failed
(``vm.action_failed``: exit 1 with the node's reason and hint). The event stream is opened
before the request, so a fast node's event is not missed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from limiquantix.cli.context import Context
from limiquantix.cli.errors import EXIT_OK, CliError, UsageError, WaitTimeout
from limiquantix.cli.output import print_json_if_asked, table
from limiquantix.cli.sizes import format_duration, parse_duration, to_gib, to_mib
from limiquantix.cli.sse import EventStream
from limiquantix.cli.waiting import follow_events
from limiquantix.client.devices import disk_attached, find_disk, media_empty, media_inserted
from limiquantix.common.events import (
    Event,
    VmActionFailed,
    VmDiskAttached,
    VmDiskDetached,
    VmMediaEjected,
    VmMediaInserted,
    VmResized,
)
from limiquantix.common.vms import VmRecord

SETTLE_S = 10.0


class DeviceChangeFailed(CliError):
    """The node could not carry out the change."""

    code = "device_change_failed"


def _follow(ctx: Context, stream: EventStream, vm_id: str, action: str,
            done: Callable[[Event], bool], timeout_s: float) -> Event:
    """The first event of ``vm_id`` that ``done`` accepts; a failure of ``action`` raises."""
    def step(event: object) -> Event | None:
        if event is None or getattr(event, "vm_id", None) != vm_id:
            return None
        if isinstance(event, VmActionFailed) and event.action == action:
            raise DeviceChangeFailed(f"{action} failed: {event.error.message}",
                                     hint=event.error.hint or "See the node agent's log.")
        typed = cast(Event, event)  # decoded from the stream: one of the Event union
        return typed if done(typed) else None

    found = follow_events(stream, timeout_s, step, timed_out=lambda: WaitTimeout(
        f"no word from the node after {format_duration(timeout_s)}",
        hint="See `lq events --vm VM`; the change may still be queued."))
    return cast(Event, found)  # mypy infers the union's base class for the type variable


def _run(ctx: Context, vm: str, action: str, request: Callable[[], VmRecord],
         done: Callable[[VmRecord, Event], bool],
         settled: Callable[[VmRecord], bool] = lambda _: True
         ) -> tuple[VmRecord, Event | None]:
    """Send ``request``; with ``--wait``, follow until ``done(record, event)``, then read the
    record until ``settled`` (the API's view of it can trail the event by a moment)."""
    if not ctx.args.wait:
        return request(), None
    target = ctx.client.api.vms.get(vm)
    with EventStream(ctx.client, {"vm": target.id}) as stream:
        record = request()
        event = _follow(ctx, stream, record.id, action, lambda e: done(record, e),
                        parse_duration(ctx.args.timeout))
    return ctx.client.api.devices.wait(record.id, settled, timeout_s=SETTLE_S), event


# --- resize ----------------------------------------------------------------------------------

def resize(ctx: Context) -> int:
    args = ctx.args
    fields = {
        "vcpus": args.vcpus, "max_vcpus": args.max_vcpus,
        "memory_mib": to_mib(args.memory) if args.memory else None,
        "max_memory_mib": to_mib(args.max_memory) if args.max_memory else None,
        "disk_gib": to_gib(args.disk) if args.disk else None,
    }
    if all(value is None for value in fields.values()):
        raise UsageError("nothing to change: give --vcpus, --memory, --disk, --max-vcpus or "
                         "--max-memory")
    record, event = _run(ctx, args.vm, "vm.resize",
                         lambda: ctx.client.api.devices.resize(args.vm, **fields),
                         lambda _record, e: isinstance(e, VmResized))
    figures = (f"{record.vcpus} vCPUs (max {record.max_vcpus}), {record.memory_mib} MiB "
               f"(max {record.max_memory_mib}), disk {record.disk_gib} GiB")
    if event is None:
        ctx.print(f"{record.name}: resize to {figures} queued")
    elif isinstance(event, VmResized) and event.live:
        ctx.print(f"{record.name}: {figures}, applied live")
    else:
        ctx.print(f"{record.name}: {figures}, applied at the next start")
    return EXIT_OK


# --- disks -----------------------------------------------------------------------------------

def disk_add(ctx: Context) -> int:
    args = ctx.args
    size = to_gib(args.size)
    record, _ = _run(ctx, args.vm, "vm.disk_attach",
                     lambda: ctx.client.api.devices.add_disk(args.vm, args.name, size),
                     lambda r, e: isinstance(e, VmDiskAttached) and e.disk.name == args.name,
                     disk_attached(args.name))
    disk = next(d for d in record.disks if d.name == args.name)
    state = "attached" if args.wait else disk.state
    ctx.print(f"{record.name}: disk {disk.name} ({disk.size_gib} GiB, {disk.bus} "
              f"{disk.target}) {state}")
    return EXIT_OK


def disk_list(ctx: Context) -> int:
    disks = ctx.client.api.devices.disks(ctx.args.vm)
    if print_json_if_asked(ctx, disks):
        return EXIT_OK
    rows = [[d.name, f"{d.size_gib} GiB", d.target, d.bus, d.state, d.id, d.path or "-"]
            for d in disks]
    ctx.print(table(["NAME", "SIZE", "TARGET", "BUS", "STATE", "ID", "PATH"], rows))
    return EXIT_OK


def disk_remove(ctx: Context) -> int:
    args = ctx.args
    record, _ = _run(ctx, args.vm, "vm.disk_detach",
                     lambda: ctx.client.api.devices.remove_disk(args.vm, args.disk),
                     lambda r, e: isinstance(e, VmDiskDetached) and args.disk in (
                         e.disk_id, e.disk_name),
                     lambda r: find_disk(r, args.disk) is None)
    ctx.print(f"{record.name}: disk {args.disk} {'removed' if args.wait else 'detaching'}")
    return EXIT_OK


# --- media -----------------------------------------------------------------------------------

def media_insert(ctx: Context) -> int:
    args = ctx.args
    record, event = _run(ctx, args.vm, "vm.media_insert",
                         lambda: ctx.client.api.devices.insert_media(args.vm, args.image),
                         lambda r, e: isinstance(e, VmMediaInserted), media_inserted)
    name = record.media.name if record.media else args.image
    if event is None:
        ctx.print(f"{record.name}: inserting {name}")
    else:
        when = "now" if isinstance(event, VmMediaInserted) and event.live else "at next start"
        ctx.print(f"{record.name}: {name} in the media drive ({when})")
    return EXIT_OK


def media_eject(ctx: Context) -> int:
    args = ctx.args
    record, _ = _run(ctx, args.vm, "vm.media_eject",
                     lambda: ctx.client.api.devices.eject_media(args.vm),
                     lambda r, e: isinstance(e, VmMediaEjected), media_empty)
    ctx.print(f"{record.name}: media drive {'empty' if args.wait else 'ejecting'}")
    return EXIT_OK
