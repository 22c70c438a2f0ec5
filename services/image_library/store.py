"""Image records in the ``lq_images`` KV bucket (compare-and-set updates) and their events."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from limiquantix.common.base import utcnow
from limiquantix.common.errors import Conflict
from limiquantix.common.events import (
    Event,
    ImageStateChanged,
    event_encoder,
    event_subject,
)
from limiquantix.common.images import ImageRecord, image_decoder, image_encoder
from limiquantix.image_library.errors import ImageNotFound

log = structlog.get_logger()

CAS_ATTEMPTS = 20


class ImageStore:
    """Typed access to image records; every state change is published as an event."""

    def __init__(self, kv: KeyValue, js: JetStreamContext) -> None:
        self._kv = kv
        self._js = js

    async def get(self, image_id: str) -> tuple[ImageRecord, int]:
        """The record and its revision; ImageNotFound when absent."""
        try:
            entry = await self._kv.get(image_id)
        except KeyNotFoundError:
            raise ImageNotFound(f"image {image_id!r} does not exist", image_id=image_id) from None
        if not entry.value:
            raise ImageNotFound(f"image {image_id!r} does not exist", image_id=image_id)
        return image_decoder.decode(entry.value), int(entry.revision or 0)

    async def find(self, image_id: str) -> ImageRecord | None:
        try:
            return (await self.get(image_id))[0]
        except ImageNotFound:
            return None

    async def create(self, record: ImageRecord) -> ImageRecord:
        """Store a new record; Conflict when the id exists."""
        try:
            await self._kv.create(record.id, image_encoder.encode(record))
        except KeyWrongLastSequenceError:
            raise Conflict(f"image {record.id!r} already exists", image_id=record.id) from None
        await self._state_event(record, previous="")
        return record

    async def update(
        self, image_id: str, change: Callable[[ImageRecord], ImageRecord | None],
        *, reason: str = "",
    ) -> ImageRecord | None:
        """Apply ``change`` atomically (None leaves the record); publishes state changes."""
        for _ in range(CAS_ATTEMPTS):
            current, revision = await self.get(image_id)
            new = change(current)
            if new is None:
                return None
            new = msgspec.structs.replace(new, updated_at=utcnow())
            try:
                await self._kv.update(image_id, image_encoder.encode(new), last=revision)
            except KeyWrongLastSequenceError:
                continue
            if new.state != current.state:
                await self._state_event(new, previous=current.state, reason=reason or new.error)
            return new
        raise Conflict(f"image {image_id!r} is being changed by many writers; retry")

    async def purge(self, record: ImageRecord) -> None:
        await self._kv.purge(record.id)

    async def all(self) -> list[ImageRecord]:
        try:
            keys = await self._kv.keys()
        except Exception:  # nats-py raises NoKeysError on an empty bucket
            return []
        records = []
        for key in keys:
            record = await self.find(key)
            if record is not None:
                records.append(record)
        return records

    async def publish(self, event: Event) -> None:
        """Publish an event; a lost event must not fail the work it reports on."""
        try:
            await self._js.publish(event_subject(event), event_encoder.encode(event))
        except Exception as exc:
            log.warning("event not published", error=str(exc), subject=event_subject(event))

    async def _state_event(self, record: ImageRecord, *, previous: str, reason: str = "") -> None:
        await self.publish(ImageStateChanged(
            image_id=record.id, name=record.name, state=record.state, previous=previous,
            reason=reason,
        ))
