"""``PUT /images/{id}/file``: a streamed upload into an upload record, verified like an import.

The body goes to ``partial/`` chunk by chunk (multi-GB bodies are never held in memory); an
upload that ends early (client gone, short body) leaves no file and the record in ``error``,
from where the same PUT can be sent again.
"""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec
import structlog
from aiohttp import web

from limiquantix.common.errors import Conflict
from limiquantix.common.hashing_file import HashingFile
from limiquantix.common.images import ImageRecord, ImageState
from limiquantix.image_library.errors import ImageBusy, NotUploader, UploadIncomplete
from limiquantix.image_library.finalize import fail, reason_of, verify_and_activate
from limiquantix.image_library.progress import ProgressReporter
from limiquantix.image_library.service import RESTARTABLE, ImageService

log = structlog.get_logger()

CHUNK = 1 << 20
CHECKSUM_HEADER = "X-Checksum-Sha256"


async def _claim(service: ImageService, image_id: str, total: int | None,
                 uploader: str) -> ImageRecord:
    """Move the record to ``uploading`` (CAS: two concurrent uploads cannot both pass), only
    for the caller the record was created for."""

    def claim(current: ImageRecord) -> ImageRecord:
        if current.created_by != uploader:
            raise NotUploader(f"image {image_id!r} was created by another caller")
        if current.source_url or current.catalog_id:
            raise Conflict(f"image {image_id!r} is imported from a URL; it takes no upload")
        if current.state not in RESTARTABLE | {ImageState.QUEUED}:
            raise ImageBusy(f"image {image_id!r} is {current.state}", state=current.state)
        return msgspec.structs.replace(
            current, state=ImageState.UPLOADING, error="", bytes_done=0, bytes_total=total,
        )

    claimed = await service.store.update(image_id, claim)
    assert claimed is not None
    return claimed


async def receive_upload(
    service: ImageService, image_id: str, request: web.Request, *, uploader: str,
) -> ImageRecord:
    """Stream the request body into the image (``uploader`` must be the record's creator),
    then verify and activate it."""
    total = request.content_length
    await _claim(service, image_id, total, uploader)
    part = service.layout.part(image_id)
    out = await HashingFile.create(part)
    progress = ProgressReporter(service.store, image_id, total=total)
    try:
        try:
            async for chunk in request.content.iter_chunked(CHUNK):
                await out.write(chunk)
                await progress.advance(out.size)
        except (ConnectionError, aiohttp.ClientPayloadError) as exc:
            raise UploadIncomplete(
                f"the connection ended mid-upload after {out.size} bytes ({exc})"
            ) from None
        finally:
            await out.close()
        if total is not None and out.size != total:
            raise UploadIncomplete(f"upload ended after {out.size} of {total} bytes")
        await progress.report(out.size)
        expected = request.headers.get(CHECKSUM_HEADER, "")
        return await verify_and_activate(
            service.store, service.layout, image_id, sha256=out.hexdigest(), expected=expected,
        )
    except asyncio.CancelledError:
        await asyncio.shield(fail(service.store, service.layout, image_id,
                                  "upload_incomplete: the client went away mid-upload"))
        raise
    except Exception as exc:
        await fail(service.store, service.layout, image_id, reason_of(exc))
        raise
