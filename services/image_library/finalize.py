"""The last steps shared by imports and uploads: verify, inspect, move into place, ``active``.

Any failure removes the partial file and leaves the record in ``error`` with the reason, so
only a complete, verified, inspected file is ever in ``files/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

import msgspec
import structlog

from limiquantix.common.errors import LimiquantixError
from limiquantix.common.images import ImageRecord, ImageState
from limiquantix.image_library import inspection, metrics
from limiquantix.image_library.errors import ChecksumMismatch, ImageNotFound
from limiquantix.image_library.layout import StoreLayout
from limiquantix.image_library.store import ImageStore

log = structlog.get_logger()

FILE_MODE = 0o600


async def verify_and_activate(
    store: ImageStore, layout: StoreLayout, image_id: str, *, sha256: str, expected: str = "",
) -> ImageRecord:
    """Check the finished partial file and publish it as the image's file."""
    part = layout.part(image_id)
    record = await store.update(
        image_id, lambda r: msgspec.structs.replace(r, state=ImageState.VERIFYING),
    )
    assert record is not None
    expected = expected or record.expected_sha256
    if expected and expected.lower() != sha256:
        raise ChecksumMismatch(
            f"sha256 mismatch: expected {expected.lower()}, got {sha256}",
            expected=expected.lower(), actual=sha256,
        )
    found = await inspection.inspect(part, declared=record.format)
    target = layout.file(image_id)

    def publish_file() -> None:
        # Only this service reads the store (it serves files over HTTP): not other users.
        os.chmod(part, FILE_MODE)
        os.replace(part, target)
        fd = os.open(layout.files, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a crash
        finally:
            os.close(fd)

    await asyncio.to_thread(publish_file)
    layout.discard_partial(image_id)
    if layout.replica is not None:  # replicated before it is announced active
        await layout.replica.put(image_id, target)

    def activate(current: ImageRecord) -> ImageRecord:
        return msgspec.structs.replace(
            current, state=ImageState.ACTIVE, format=found.format,
            virtual_size=found.virtual_size, file_size=found.file_size, sha256=sha256,
            bytes_done=found.file_size, bytes_total=found.file_size, error="",
        )

    try:
        active = await store.update(image_id, activate)
    except ImageNotFound:
        layout.discard_all(image_id)  # deleted meanwhile
        raise
    assert active is not None
    metrics.IMAGE_IMPORTS.labels("active").inc()
    metrics.IMAGE_IMPORT_BYTES.inc(found.file_size)
    log.info("image active", image_id=image_id, format=found.format, sha256=sha256,
             size=found.file_size)
    return active


async def fail(store: ImageStore, layout: StoreLayout, image_id: str, reason: str) -> None:
    """Drop every partial file and record ``error`` with the reason (a deleted record stays so)."""
    layout.discard_partial(image_id)
    metrics.IMAGE_IMPORTS.labels("error").inc()
    log.warning("image failed", image_id=image_id, reason=reason)

    def to_error(current: ImageRecord) -> ImageRecord | None:
        if current.state in (ImageState.DELETING, ImageState.ACTIVE, ImageState.REMOTE,
                             ImageState.AVAILABLE):
            return None
        return msgspec.structs.replace(current, state=ImageState.ERROR, error=reason)

    with contextlib.suppress(ImageNotFound):
        await store.update(image_id, to_error, reason=reason)


def reason_of(exc: BaseException) -> str:
    """A one-line reason for a record's ``error`` field."""
    if isinstance(exc, LimiquantixError):
        return f"{exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
