"""The image library's operations (what the RPCs and the HTTP server call)."""

from __future__ import annotations

import posixpath
import uuid
from urllib.parse import unquote, urlsplit

import msgspec
import structlog

from limiquantix.common.errors import InvalidRequest
from limiquantix.common.events import ImageStateChanged
from limiquantix.common.images import (
    CreateImageRequest,
    ImageDeleted,
    ImageList,
    ImageRecord,
    ImageState,
    ListImages,
)
from limiquantix.common.model import utcnow
from limiquantix.common.settings import Settings
from limiquantix.image_library import catalog
from limiquantix.image_library.errors import ImageBusy
from limiquantix.image_library.finalize import fail
from limiquantix.image_library.importer import Importer, check_source_url
from limiquantix.image_library.layout import StoreLayout
from limiquantix.image_library.store import ImageStore

log = structlog.get_logger()

# States from which a new import or upload may (re)start.
RESTARTABLE = frozenset({ImageState.REMOTE, ImageState.AVAILABLE, ImageState.ERROR})
IMPORTING = frozenset({ImageState.QUEUED, ImageState.DOWNLOADING, ImageState.VERIFYING})


def _name_from_url(url: str) -> str:
    return posixpath.basename(unquote(urlsplit(url).path)) or url


class ImageService:
    """Catalog operations over the store, the importer and the on-disk layout."""

    def __init__(
        self, settings: Settings, store: ImageStore, layout: StoreLayout, importer: Importer,
    ) -> None:
        self.settings = settings
        self.store = store
        self.layout = layout
        self.importer = importer

    async def list(self, query: ListImages) -> ImageList:
        records = [
            r for r in await self.store.all()
            if (not query.state or r.state == query.state)
            and (not query.format or r.format == query.format)
            and (not query.os or r.os == query.os)
        ]
        return ImageList(images=tuple(sorted(records, key=lambda r: (r.name, r.id))))

    async def get(self, image_id: str) -> ImageRecord:
        return (await self.store.get(image_id))[0]

    async def import_image(self, request: CreateImageRequest) -> ImageRecord:
        """Queue a download (catalog entry or URL) and start it."""
        if request.catalog_id:
            record = await self._requeue_catalog_entry(request)
        elif request.source_url:
            await check_source_url(request.source_url, self.settings)
            record = await self.store.create(self._new_record(request, ImageState.QUEUED))
        else:
            raise InvalidRequest("an import needs a source_url or a catalog_id")
        self.importer.start(record.id)
        return record

    async def create_upload(self, request: CreateImageRequest, *,
                            created_by: str = "") -> ImageRecord:
        """A record to PUT the file into; only ``created_by`` may PUT it."""
        if request.source_url or request.catalog_id:
            raise InvalidRequest("an upload takes no source_url or catalog_id")
        if not request.name:
            raise InvalidRequest("an upload needs a name")
        record = self._new_record(request, ImageState.QUEUED)
        return await self.store.create(msgspec.structs.replace(record, created_by=created_by))

    def _new_record(self, request: CreateImageRequest, state: ImageState) -> ImageRecord:
        now = utcnow()
        return ImageRecord(
            id=str(uuid.uuid4()), name=request.name or _name_from_url(request.source_url),
            os=request.os, version=request.version, architecture=request.architecture,
            format=request.format, default_user=request.default_user,
            source_url=request.source_url, expected_sha256=request.sha256.lower(),
            labels=dict(request.labels), state=state, created_at=now, updated_at=now,
        )

    async def _requeue_catalog_entry(self, request: CreateImageRequest) -> ImageRecord:
        entry = catalog.find_entry(request.catalog_id, self.settings.catalog_mirror)
        record, _ = await self.store.get(request.catalog_id)  # ImageNotFound when unknown
        url = request.source_url or (entry.source_url if entry else record.source_url)
        await check_source_url(url, self.settings)

        def queue(current: ImageRecord) -> ImageRecord:
            if current.state not in RESTARTABLE:
                raise ImageBusy(
                    f"image {current.id!r} is {current.state}; only a remote or failed "
                    "catalog entry can be imported", state=current.state,
                )
            return msgspec.structs.replace(
                current, state=ImageState.QUEUED, source_url=url, error="",
                expected_sha256=request.sha256.lower(), bytes_done=0, bytes_total=None,
                format=request.format or current.format,
            )

        queued = await self.store.update(record.id, queue)
        assert queued is not None
        return queued

    async def delete(self, image_id: str) -> ImageDeleted:
        """Cancel any import, remove the file; a catalog entry becomes ``remote`` again."""
        record, _ = await self.store.get(image_id)
        if record.state == ImageState.UPLOADING:
            raise ImageBusy(f"image {image_id!r} is being uploaded; abort the upload first")
        await self.importer.cancel(image_id)
        deleting = await self.store.update(
            image_id, lambda r: msgspec.structs.replace(r, state=ImageState.DELETING),
        )
        assert deleting is not None
        return await self._finish_delete(deleting)

    async def _finish_delete(self, record: ImageRecord) -> ImageDeleted:
        self.layout.discard_all(record.id)
        if self.layout.replica is not None:
            await self.layout.replica.delete(record.id)
        entry = (catalog.find_entry(record.catalog_id, self.settings.catalog_mirror)
                 if record.catalog_id else None)
        if entry is not None:
            fresh = catalog.remote_record(entry)

            def reset(current: ImageRecord) -> ImageRecord:
                return msgspec.structs.replace(fresh, created_at=current.created_at)

            await self.store.update(record.id, reset)
            log.info("image deleted; catalog entry remote again", image_id=record.id)
            return ImageDeleted(id=record.id, state=ImageState.REMOTE)
        await self.store.purge(record)
        await self.store.publish(ImageStateChanged(
            image_id=record.id, name=record.name, state="deleted", previous=record.state,
        ))
        log.info("image deleted", image_id=record.id)
        return ImageDeleted(id=record.id, state="deleted")

    async def _mark_missing(self, image_id: str) -> None:
        reason = "the file is missing from the store; delete and import it again"

        def to_error(current: ImageRecord) -> ImageRecord:
            return msgspec.structs.replace(current, state=ImageState.ERROR, error=reason)

        await self.store.update(image_id, to_error, reason=reason)

    async def recover(self) -> None:
        """After a (re)start: resume imports, fail interrupted uploads, finish deletes."""
        for record in await self.store.all():
            if record.state in IMPORTING and record.source_url:
                log.info("resuming import", image_id=record.id, state=record.state)
                self.importer.start(record.id)
            elif record.state == ImageState.UPLOADING:
                await fail(self.store, self.layout, record.id,
                           "upload interrupted by a restart of the image library; upload again")
            elif record.state == ImageState.DELETING:
                await self._finish_delete(record)
            elif (record.state == ImageState.ACTIVE
                  and not self.layout.file(record.id).exists()
                  and not (self.layout.replica is not None
                           and await self.layout.replica.has(record.id))):
                await self._mark_missing(record.id)
        known = {r.id for r in await self.store.all()}
        for path in self.layout.partial.iterdir():
            if path.name.split(".", 1)[0] not in known:
                path.unlink(missing_ok=True)  # left by an image deleted while we were down
