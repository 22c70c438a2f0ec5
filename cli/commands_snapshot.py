"""``lq vm snapshot create|list|revert|delete``, ``lq vm clone``, ``lq vm publish``
(docs/day2.md)."""

from __future__ import annotations

import time

import msgspec

from limiquantix.cli.commands_image import image_failed
from limiquantix.cli.context import Context
from limiquantix.cli.errors import EXIT_OK, CliError, ImageFailed, WaitTimeout
from limiquantix.cli.output import Progress, StatusLine, table
from limiquantix.cli.sizes import format_duration, parse_duration
from limiquantix.cli.sse import EventStream
from limiquantix.cli.waiting import VmWaiter
from limiquantix.common.events import ImageProgress, ImageStateChanged, VmPublishProgress
from limiquantix.common.images import ImageRecord, ImageState
from limiquantix.common.vms import VmSnapshot, VmState

POLL_S = 0.5
RESYNC_AFTER_S = 10.0
_json = msgspec.json.Encoder()


class SnapshotFailed(CliError):
    """The node could not carry out the snapshot operation."""

    code = "snapshot_failed"


def _wait_snapshot(ctx: Context, vm: str, snap_id: str, targets: tuple[str, ...],
                   timeout_s: float) -> VmSnapshot | None:
    """Poll the VM's list until the snapshot is in ``targets`` ("gone": not listed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [s for s in ctx.client.api.snapshots.list(vm) if s.id == snap_id]
        snap = found[0] if found else None
        state = str(snap.state) if snap else "gone"
        if snap is not None and snap.error and state in ("ready", "error"):
            # error: the create failed; ready with an error: a revert or delete failed
            raise SnapshotFailed(f"snapshot {snap.name}: {snap.error}",
                                     hint="See `lq events --vm VM`; delete the snapshot and "
                                          "try again.")
        if state in targets:
            return snap
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"snapshot {snap_id} is still {state} after "
                              f"{format_duration(timeout_s)}")
        time.sleep(POLL_S)


def create(ctx: Context) -> int:
    args = ctx.args
    timeout_s = parse_duration(args.timeout)
    snap = ctx.client.api.snapshots.create(args.vm, args.name, description=args.description,
                                           memory=args.memory)
    if not args.wait:
        ctx.print(f"{args.vm}: snapshot {snap.name} {snap.state}")
        return EXIT_OK
    done = _wait_snapshot(ctx, args.vm, snap.id, ("ready", "error"), timeout_s)
    assert done is not None
    ctx.print(f"{args.vm}: snapshot {done.name} ready"
              f"{' (with memory)' if done.memory else ''}")
    return EXIT_OK


def list_snapshots(ctx: Context) -> int:
    items = ctx.client.api.snapshots.list(ctx.args.vm)
    if ctx.args.json:
        ctx.print(_json.encode(items).decode())
        return EXIT_OK
    rows = [[s.name, str(s.state), s.created_at.strftime("%Y-%m-%d %H:%M:%S"),
             "yes" if s.memory else "no", "yes" if s.quiesced else "no", s.vm_state or "-",
             _size(s.size_bytes), s.description or s.error] for s in items]
    ctx.print(table(["NAME", "STATE", "CREATED", "MEMORY", "QUIESCED", "VM WAS", "SIZE",
                     "DESCRIPTION"], rows))
    return EXIT_OK


def _size(value: int | None) -> str:
    return "-" if value is None else f"{value / (1 << 20):.1f} MiB"


def revert(ctx: Context) -> int:
    args = ctx.args
    timeout_s = parse_duration(args.timeout)
    snap = ctx.client.api.snapshots.revert(args.vm, args.snapshot)
    if not args.wait:
        ctx.print(f"{args.vm}: reverting to {snap.name}")
        return EXIT_OK
    _wait_snapshot(ctx, args.vm, snap.id, ("ready", "error"), timeout_s)
    record = ctx.client.api.vms.get(args.vm)
    ctx.print(f"{args.vm}: reverted to {snap.name}, {record.state}")
    return EXIT_OK


def delete(ctx: Context) -> int:
    args = ctx.args
    timeout_s = parse_duration(args.timeout)
    snap = ctx.client.api.snapshots.delete(args.vm, args.snapshot)
    if args.wait:
        _wait_snapshot(ctx, args.vm, snap.id, ("gone",), timeout_s)
        ctx.print(f"{args.vm}: snapshot {snap.name} deleted")
    else:
        ctx.print(f"{args.vm}: deleting snapshot {snap.name}")
    return EXIT_OK


def clone(ctx: Context) -> int:
    args = ctx.args
    timeout_s = parse_duration(args.timeout)
    record = ctx.client.api.snapshots.clone(
        args.source, args.name, snapshot=args.snapshot, linked=not args.full,
        description=args.description)
    kind = "full" if args.full else "linked"
    ctx.print(f"{record.name}: {kind} clone of {args.source} on {record.node} ({record.id})")
    if not args.wait:
        return EXIT_OK
    targets = (VmState.READY,) if args.wait == "ready" else (VmState.RUNNING, VmState.READY)
    status = StatusLine(ctx.err)
    final = VmWaiter(ctx.client, status).wait(record.id, record.name, targets, timeout_s)
    status.done()
    ctx.print(f"{record.name}: {final.state if final else 'deleted'}")
    return EXIT_OK


def publish(ctx: Context) -> int:
    args = ctx.args
    timeout_s = parse_duration(args.timeout)
    # The stream opens first, so not one progress event of a fast upload is missed.
    with EventStream(ctx.client) as stream:
        image = ctx.client.api.snapshots.publish(args.vm, args.image_name,
                                                 snapshot=args.snapshot)
        ctx.print(f"Publishing {args.vm} as image {image.id} ({image.name})")
        if not args.wait:
            ctx.print(f"state: {image.state}  (follow: lq image show {image.id})")
            return EXIT_OK
        final = _follow_publish(ctx, stream, image, timeout_s)
    ctx.print(f"{final.id} is active: {final.format}, file {final.file_size} bytes; "
              f"lq vm create NAME --image {final.name or final.id}")
    return EXIT_OK


def _follow_publish(ctx: Context, stream: EventStream, image: ImageRecord, timeout_s: float
                    ) -> ImageRecord:
    """The node's phases (``vm.publish_progress``: convert, upload; a failure ends it) and the
    image's own (uploading, verifying, active or error), until the image is final."""
    label = f"{image.name}:"
    bar = Progress(label, ctx.err)
    deadline = time.monotonic() + timeout_s
    shown = ""
    record = ctx.client.api.images.get(image.id)
    while True:
        if record.state in (ImageState.ACTIVE, ImageState.ERROR):
            bar.finish(f"{label} {record.state}" if record.state != shown else "")
            if record.state == ImageState.ERROR:
                raise image_failed(record)
            return record
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            bar.finish()
            raise WaitTimeout(f"{image.name} is still {record.state} after "
                              f"{format_duration(timeout_s)}")
        message = stream.get(timeout_s=min(remaining, RESYNC_AFTER_S))
        if message is None:
            record = ctx.client.api.images.get(image.id)
            continue
        match message.decoded():
            case VmPublishProgress(image_id=image_id, phase="failed") as event if (
                    image_id == image.id):
                bar.finish()
                raise ImageFailed(f"{image.name}: {event.message}",
                                  hint=f"Fix the cause, then 'lq image delete {image.id}' and "
                                       "publish again.")
            case VmPublishProgress(image_id=image_id) as event if image_id == image.id:
                if event.phase != shown and event.phase in ("convert", "upload"):
                    shown = event.phase
                    doing = "flattening the disk" if shown == "convert" else "uploading"
                    bar.finish(f"{label} {doing} (node)")
            case ImageProgress(image_id=image_id, node="") as event if image_id == image.id:
                bar.update(event.bytes_done, event.bytes_total, event.bytes_per_second)
            case ImageStateChanged(image_id=image_id) as event if image_id == image.id:
                if event.state != shown:
                    shown = event.state
                    bar.finish(f"{label} {event.state}")
                record = ctx.client.api.images.get(image.id)
