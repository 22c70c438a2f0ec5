"""Waiting for the image library to finish an import a new VM needs (images on demand).

A VM created from a catalog entry that was not downloaded waits in ``pending`` while the library
imports it; the node follows the library's record (a cheap ``get`` twice a second) and passes its
progress on to the VM. The wait ends when the image is ``active``, fails with the import's own
reason when the import fails, and gives up when the download stalls or the library stays away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from limiquantix.common.errors import Unavailable
from limiquantix.common.images import ImageState
from limiquantix.image_library.client import ImageLibraryClient
from limiquantix.node_agent.images.errors import ImageImportFailed

log = structlog.get_logger()

Progress = Callable[[int, int | None], Awaitable[None]]

POLL_S = 0.5
# Progress is reported at least this often, changed or not: it touches the pending record, which
# tells the gateway's create sweeper the create is in hand (LQ_CREATE_SWEEP_AFTER_S is larger).
KEEPALIVE_S = 10.0
STALL_S = 600.0  # no byte for this long: the import is stuck
LIBRARY_GONE_S = 120.0  # the library did not answer this long (the node passes its
# LQ_TRANSIENT_RETRY_S: one deadline for every transient failure)
IMPORTING = frozenset({ImageState.QUEUED, ImageState.DOWNLOADING, ImageState.VERIFYING,
                       ImageState.UPLOADING})


async def wait_until_active(
    client: ImageLibraryClient, image_id: str, *, on_progress: Progress | None = None,
    poll_s: float = POLL_S, stall_s: float = STALL_S, gone_s: float = LIBRARY_GONE_S,
) -> None:
    """Return once ``image_id`` is active; raise ImageImportFailed or Unavailable otherwise."""
    last_done, last_change = -1, time.monotonic()
    last_report = last_change
    unreachable_since: float | None = None
    while True:
        try:
            record = await client.get(image_id)
        except Unavailable:
            now = time.monotonic()
            unreachable_since = unreachable_since or now
            if now - unreachable_since > gone_s:
                raise
            await asyncio.sleep(poll_s)
            continue
        unreachable_since = None
        if record.state == ImageState.ACTIVE:
            return
        if record.state not in IMPORTING:
            why = record.error or f"it is {record.state} (the import was cancelled)"
            raise ImageImportFailed(f"the import of image {record.name!r} failed: {why}",
                                    image_id=image_id)
        now = time.monotonic()
        if record.bytes_done != last_done or now - last_report >= KEEPALIVE_S:
            if record.bytes_done != last_done:
                last_done, last_change = record.bytes_done, now
            last_report = now
            if on_progress is not None:
                await on_progress(record.bytes_done, record.bytes_total)
        elif now - last_change > stall_s:
            raise ImageImportFailed(
                f"the import of image {record.name!r} made no progress for {stall_s:g} s",
                image_id=image_id)
        await asyncio.sleep(poll_s)
