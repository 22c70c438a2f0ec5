"""``lq image …``: list, show, import (URL or catalog id), upload and delete, with progress."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import IO, Any

import msgspec

from limiquantix.cli.client import ApiClient
from limiquantix.cli.context import Context
from limiquantix.cli.errors import (
    EXIT_OK,
    ApiError,
    ImageFailed,
    LocalFileError,
    UsageError,
    WaitTimeout,
)
from limiquantix.cli.output import Progress, key_values, table
from limiquantix.cli.sizes import format_bytes, format_duration, parse_duration
from limiquantix.cli.sse import EventStream
from limiquantix.cli.waiting import follow_events
from limiquantix.common.events import ImageProgress, ImageStateChanged
from limiquantix.common.images import ImageRecord, ImageState

_json = msgspec.json.Encoder()
_SHA256_HEX = set("0123456789abcdef")


def find_image(client: ApiClient, ref: str) -> ImageRecord:
    """By id, else by exact name (unique); a clear error otherwise."""
    try:
        return client.api.images.get(ref)
    except ApiError as exc:
        if exc.http_status != 404:
            raise
        named = [i for i in client.api.images.list() if i.name == ref]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise ApiError(409, "ambiguous_name", f"{len(named)} images are named {ref!r}",
                           "Use the image id (lq image list).") from None
        raise


def _size(value: int | None) -> str:
    return format_bytes(value) if value else "-"


def list_images(ctx: Context) -> int:
    args = ctx.args
    records = ctx.client.api.images.list(state=args.state or "", format=args.format or "",
                                         os=args.os or "")
    if args.json:
        ctx.print(_json.encode(records).decode())
        return EXIT_OK
    if args.quiet:
        if records:
            ctx.print("\n".join(r.id for r in records))
        return EXIT_OK
    rows = [[r.id, str(r.state), r.format or "-", _size(r.virtual_size), _size(r.file_size),
             r.default_user or "-", r.name] for r in records]
    ctx.print(table(["ID", "STATE", "FORMAT", "VIRTUAL", "FILE", "USER", "NAME"], rows))
    return EXIT_OK


def show(ctx: Context) -> int:
    record = find_image(ctx.client, ctx.args.image)
    if ctx.args.json:
        ctx.print(_json.encode(record).decode())
        return EXIT_OK
    ctx.print(key_values([
        ("id", record.id), ("name", record.name), ("state", str(record.state)),
        ("error", record.error), ("format", record.format),
        ("os", f"{record.os} {record.version}".strip()), ("arch", record.architecture),
        ("virtual size", _size(record.virtual_size)), ("file size", _size(record.file_size)),
        ("sha256", record.sha256), ("default user", record.default_user),
        ("source", record.source_url),
        ("created", record.created_at.isoformat(timespec="seconds")),
    ]))
    return EXIT_OK


def _check_sha256(value: str | None) -> str:
    digest = (value or "").lower().removeprefix("sha256:")
    if digest and (len(digest) != 64 or not set(digest) <= _SHA256_HEX):
        raise UsageError(f"--sha256 {value!r} is not 64 hex digits")
    return digest


def import_image(ctx: Context) -> int:
    args = ctx.args
    body: dict[str, Any] = {}
    if "://" in args.source:
        body["source_url"] = args.source
        body["name"] = args.name or os.path.basename(args.source.split("?")[0]) or args.source
    else:
        body["catalog_id"] = args.source
        if args.name:
            body["name"] = args.name
        if args.mirror:
            body["source_url"] = args.mirror
    sha256 = _check_sha256(args.sha256)
    if sha256:
        body["sha256"] = sha256
    timeout_s = parse_duration(args.timeout)
    # The stream opens before the POST, so not one progress event of a fast import is missed.
    with EventStream(ctx.client) as stream:
        record = ctx.client.post("/v1/images", ImageRecord, body)
        ctx.print(f"Importing {record.id} ({record.name}) from {record.source_url}")
        if not args.wait:
            ctx.print(f"state: {record.state}  (follow: lq image show {record.id})")
            return EXIT_OK
        final = _follow(ctx, stream, record, timeout_s)
    ctx.print(_summary(final))
    return EXIT_OK


class ImageFollower:
    """Progress bar and state lines of one image until ``active`` (answered) or ``error``
    (raised); :meth:`step` takes each event of the stream (None: it was quiet)."""

    def __init__(self, ctx: Context, record: ImageRecord) -> None:
        self.ctx = ctx
        self.label = f"{record.name or record.id}:"
        self.progress = Progress(self.label, ctx.err)
        self.shown = ""
        self.record = _get(ctx.client, record.id)

    def final(self) -> ImageRecord | None:
        """The record once ``active``; :class:`ImageFailed` once ``error``; else None."""
        record = self.record
        if record.state not in (ImageState.ACTIVE, ImageState.ERROR):
            return None
        # The record can be read as final before that state's event arrives: say it anyway,
        # so every follow ends on the state line it ended in.
        self.progress.finish(f"{self.label} {record.state}" if record.state != self.shown else "")
        if record.state == ImageState.ERROR:
            raise image_failed(record)
        return record

    def step(self, event: object) -> ImageRecord | None:
        """One event (None: quiet stream, re-read the record as a safety net)."""
        image_id = self.record.id
        match event:
            case None:
                self.record = _get(self.ctx.client, image_id)
            case ImageProgress(node="") if event.image_id == image_id:
                self.progress.update(event.bytes_done, event.bytes_total,
                                     event.bytes_per_second)
            case ImageStateChanged() if event.image_id == image_id:
                if event.state != self.shown:
                    self.shown = event.state
                    reason = f" ({event.reason})" if event.reason else ""
                    self.progress.finish(f"{self.label} {event.state}{reason}")
                self.record = _get(self.ctx.client, image_id)
        return self.final()

    def timed_out(self, timeout_s: float) -> WaitTimeout:
        self.progress.finish()
        return WaitTimeout(f"{self.record.name or self.record.id} is still {self.record.state} "
                           f"after {format_duration(timeout_s)}")

    def follow(self, stream: EventStream, timeout_s: float) -> ImageRecord:
        """Until final. The stream was opened before the import (or publish) was asked for,
        so its events come complete and in order."""
        return self.final() or follow_events(stream, timeout_s, self.step,
                                             timed_out=lambda: self.timed_out(timeout_s))


def _follow(ctx: Context, stream: EventStream, record: ImageRecord, timeout_s: float
            ) -> ImageRecord:
    return ImageFollower(ctx, record).follow(stream, timeout_s)


def image_failed(record: ImageRecord) -> ImageFailed:
    """The record's ``"<code>: <message>"`` reason as the error line's detail and code."""
    code, sep, message = record.error.partition(": ")
    failed = ImageFailed(f"{record.name or record.id}: {message if sep else record.error}",
                         hint=f"Fix the cause, then 'lq image delete {record.id}' and try again.")
    if sep and code.replace("_", "").isalpha():
        failed.code = code  # type: ignore[misc]  # the library's own code
    return failed


def _get(client: ApiClient, image_id: str) -> ImageRecord:
    return client.api.images.get(image_id)


def _summary(record: ImageRecord) -> str:
    return (f"{record.id} is active: {record.format}, virtual size "
            f"{_size(record.virtual_size)}, file {_size(record.file_size)}, sha256 {record.sha256}")


class _HashingFile:
    """The upload's file, hashed as the client library reads it (checked against the
    library's sha256 afterwards)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.sent = 0
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.sent += len(data)
        self.hash.update(data)
        return data


def upload(ctx: Context) -> int:
    args = ctx.args
    path = Path(args.file).expanduser()
    if not path.is_file():
        raise LocalFileError(f"{path} is not a file")
    size = path.stat().st_size
    sha256 = _check_sha256(args.sha256)
    body: dict[str, Any] = {"name": args.name or path.name}
    for key in ("format", "os", "version", "default_user"):
        if getattr(args, key, None):
            body[key] = getattr(args, key)
    if sha256:
        body["sha256"] = sha256
    record = ctx.client.post("/v1/images", ImageRecord, body)
    ctx.print(f"Uploading {path} ({format_bytes(size)}) as {record.id}")
    label = f"{record.name or record.id}:"
    progress = Progress(label, ctx.err)
    with path.open("rb") as file:
        reader = _HashingFile(file)
        try:
            with ctx.client.translated():
                final = ctx.client.api.images.upload_file(
                    record.id, reader, size, sha256=sha256,
                    progress=progress.update, timeout_s=max(ctx.client.timeout_s, 600.0))
        except BaseException:
            progress.finish()
            raise
    progress.finish(f"{label} sent {format_bytes(reader.sent)} in "
                    f"{format_duration(time.monotonic() - progress.started)}")
    if final.state != ImageState.ACTIVE:
        final = ctx.client.api.images.get(record.id)
    if final.state == ImageState.ERROR:
        raise image_failed(final)
    if final.sha256 and final.sha256 != reader.hash.hexdigest():
        raise ImageFailed(f"{record.id}: the library stored sha256 {final.sha256}, but this "
                          f"file's is {reader.hash.hexdigest()}",
                          hint="The upload was corrupted in transit; delete it and upload again.")
    ctx.print(_summary(final))
    return EXIT_OK


def delete(ctx: Context) -> int:
    for ref in ctx.args.images:
        record = find_image(ctx.client, ref)
        ctx.client.api.images.delete(record.id)
        ctx.print(f"{record.id}: deleted")
    return EXIT_OK
