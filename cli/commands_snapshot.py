"""``lq vm snapshot create|list|revert|delete``, ``lq vm template``, ``lq vm clone``,
``lq vm publish`` (docs/day2.md)."""

from __future__ import annotations

from limiquantix.cli.commands_image import ImageFollower
from limiquantix.cli.context import Context
from limiquantix.cli.errors import EXIT_OK, CliError, ImageFailed, WaitTimeout
from limiquantix.cli.output import StatusLine, print_json_if_asked, table
from limiquantix.cli.sizes import format_duration, parse_duration
from limiquantix.cli.sse import EventStream
from limiquantix.cli.waiting import VmWaiter
from limiquantix.client.waiting import poll
from limiquantix.common.events import VmPublishProgress
from limiquantix.common.images import ImageRecord
from limiquantix.common.vms import VmSnapshot, VmState


class SnapshotFailed(CliError):
    """The node could not carry out the snapshot operation."""

    code = "snapshot_failed"


def _wait_snapshot(ctx: Context, vm: str, snap_id: str, targets: tuple[str, ...],
                   timeout_s: float) -> VmSnapshot | None:
    """Poll the VM's list until the snapshot is in ``targets`` ("gone": not listed)."""
    def fetch() -> VmSnapshot | None:
        return next((s for s in ctx.client.api.snapshots.list(vm) if s.id == snap_id), None)

    def done(snap: VmSnapshot | None) -> bool:
        if snap is not None and snap.error and snap.state in ("ready", "error"):
            # error: the create failed; ready with an error: a revert or delete failed
            raise SnapshotFailed(f"snapshot {snap.name}: {snap.error}",
                                 hint="See `lq events --vm VM`; delete the snapshot and "
                                      "try again.")
        return (str(snap.state) if snap else "gone") in targets

    return poll(fetch, done, timeout_s=timeout_s, timed_out=lambda snap: (
        f"snapshot {snap_id} is still {snap.state if snap else 'gone'} after "
        f"{format_duration(timeout_s)}"), error=WaitTimeout)


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
    if print_json_if_asked(ctx, items):
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


def template(ctx: Context) -> int:
    record = ctx.client.api.snapshots.template(ctx.args.vm)
    ctx.print(f"{record.name}: a template now (frozen); linked clones: "
              f"lq vm clone {record.name} NEW-NAME")
    return EXIT_OK


def clone(ctx: Context) -> int:
    args = ctx.args
    timeout_s = parse_duration(args.timeout)
    record = ctx.client.api.snapshots.clone(
        args.source, args.name, snapshot=args.snapshot, linked=args.linked,
        description=args.description)
    source = record.clone_of
    kind = "linked" if source is not None and source.linked else "full"
    at = ""
    if source is not None and source.snapshot_id:  # its name, and whether it was taken now
        snap = ctx.client.api.snapshots.get(source.vm_id, source.snapshot_id)
        at = f" at snapshot {snap.name}" + (" (taken now)" if args.snapshot is None else "")
    ctx.print(f"{record.name}: {kind} clone of {args.source}{at} on {record.node} "
              f"({record.id})")
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
                                                 snapshot=args.snapshot,
                                                 generalize=args.generalize)
        ctx.print(f"Publishing {args.vm} as image {image.id} ({image.name}), "
                  + _generalized_note(image, args.vm))
        if not args.wait:
            ctx.print(f"state: {image.state}  (follow: lq image show {image.id})")
            return EXIT_OK
        final = _follow_publish(ctx, stream, image, timeout_s)
    ctx.print(f"{final.id} is active: {final.format}, file {final.file_size} bytes; "
              f"lq vm create NAME --image {final.name or final.id}")
    return EXIT_OK


def _generalized_note(image: ImageRecord, vm: str) -> str:
    if image.labels.get("generalized") == "true":
        return f"generalized first (the guest's identity is cleaned; {vm} is shut down)"
    return ("NOT generalized: the image keeps the guest's machine-id and logs (clones still "
            "get a new instance-id, hostname and SSH host keys from cloud-init)")


class PublishFollower(ImageFollower):
    """The image's own states, and the node's phases before them (``vm.publish_progress``:
    clean, convert, upload; a failure ends it)."""

    def step(self, event: object) -> ImageRecord | None:
        match event:
            case VmPublishProgress(phase="failed") if event.image_id == self.record.id:
                self.progress.finish()
                raise ImageFailed(f"{self.record.name}: {event.message}",
                                  hint="Fix the cause, then publish again (the failed image "
                                       f"is in error: lq image delete {self.record.id}).")
            case VmPublishProgress() if event.image_id == self.record.id:
                doing = _PHASES.get(event.phase, "")
                if event.phase != self.shown and doing:
                    self.shown = event.phase
                    self.progress.finish(f"{self.label} {doing} (node)")
                return None
        return super().step(event)


_PHASES = {"clean": "generalizing the guest", "convert": "flattening the disk",
           "upload": "uploading"}


def _follow_publish(ctx: Context, stream: EventStream, image: ImageRecord, timeout_s: float
                    ) -> ImageRecord:
    return PublishFollower(ctx, image).follow(stream, timeout_s)
