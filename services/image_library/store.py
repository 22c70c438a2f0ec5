"""Image records in the ``lq_images`` KV bucket (compare-and-set updates) and their events."""

from __future__ import annotations

from collections.abc import Callable

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from limiquantix.common.errors import Conflict
from limiquantix.common.events import Event, ImageStateChanged
from limiquantix.common.ids import is_image_id
from limiquantix.common.images import ImageRecord
from limiquantix.common.kv_records import KvRecords
from limiquantix.common.publish import publish_event
from limiquantix.image_library.errors import ImageNotFound


def _not_found(image_id: str) -> ImageNotFound:
    return ImageNotFound(f"image {image_id!r} does not exist", image_id=image_id)


class ImageStore:
    """Typed access to image records; every state change is published as an event."""

    def __init__(self, kv: KeyValue, js: JetStreamContext) -> None:
        self._records = KvRecords(kv, ImageRecord, _not_found)
        self._js = js

    async def get(self, image_id: str) -> tuple[ImageRecord, int]:
        """The record and its revision; ImageNotFound when absent."""
        if not is_image_id(image_id):  # not a KV key either: no record can have it
            raise _not_found(image_id)
        return await self._records.get(image_id)

    async def find(self, image_id: str) -> ImageRecord | None:
        return await self._records.find(image_id) if is_image_id(image_id) else None

    async def create(self, record: ImageRecord) -> ImageRecord:
        """Store a new record; Conflict when the id exists."""
        if await self._records.create(record.id, record) is None:
            raise Conflict(f"image {record.id!r} already exists", image_id=record.id)
        await self._state_event(record, previous="")
        return record

    async def update(
        self, image_id: str, change: Callable[[ImageRecord], ImageRecord | None],
        *, reason: str = "",
    ) -> ImageRecord | None:
        """Apply ``change`` atomically (None leaves the record); publishes state changes."""
        changed = await self._records.update(image_id, change)
        if changed is None:
            return None
        before, after = changed.before, changed.after
        if after.state != before.state:
            await self._state_event(after, previous=before.state, reason=reason or after.error)
        return after

    async def purge(self, record: ImageRecord) -> None:
        await self._records.purge(record.id)

    async def all(self) -> list[ImageRecord]:
        return await self._records.all()

    async def publish(self, event: Event) -> None:
        """Publish an event; a lost event must not fail the work it reports on."""
        await publish_event(self._js, event, best_effort=True)

    async def _state_event(self, record: ImageRecord, *, previous: str, reason: str = "") -> None:
        await self.publish(ImageStateChanged(
            image_id=record.id, name=record.name, state=record.state, previous=previous,
            reason=reason,
        ))
