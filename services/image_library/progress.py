"""Throttled progress of an import or upload: into the record and as ``image.progress`` events."""

from __future__ import annotations

import time

import msgspec

from limiquantix.common.events import ImageProgress
from limiquantix.common.images import ImageRecord
from limiquantix.image_library.store import ImageStore

PROGRESS_INTERVAL_S = 1.0


class ProgressReporter:
    """Call ``advance`` per chunk; at most one record write and one event per interval."""

    def __init__(
        self, store: ImageStore, image_id: str, *, total: int | None, start: int = 0,
        interval_s: float = PROGRESS_INTERVAL_S,
    ) -> None:
        self._store = store
        self._image_id = image_id
        self._total = total
        self._interval_s = interval_s
        self._started = time.monotonic()
        self._start_bytes = start
        self._last = self._started

    async def advance(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last < self._interval_s:
            return
        self._last = now
        await self.report(done)

    async def report(self, done: int) -> None:
        """Write the progress now (also used once at the start and at the end)."""
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = (done - self._start_bytes) / elapsed
        total = self._total

        def change(current: ImageRecord) -> ImageRecord:
            return msgspec.structs.replace(current, bytes_done=done, bytes_total=total)

        await self._store.update(self._image_id, change)
        await self._store.publish(ImageProgress(
            image_id=self._image_id, bytes_done=done, bytes_total=total,
            bytes_per_second=round(rate, 1),
        ))
