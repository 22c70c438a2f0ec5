"""The shipped catalog (``catalog.json``): well-known cloud images, listed as ``remote``
(downloaded on first use).

Entries are seeded into the ``lq_images`` bucket at start; importing one downloads it from its
official URL (sizes are approximate until the import measures them). The ``latest`` URLs change
with every build, so no checksum is pinned: the distribution's checksum file is in
``labels["checksums_url"]`` for an admin who wants to pass ``sha256`` explicitly.
"""

from __future__ import annotations

import importlib.resources

import msgspec
import structlog

from limiquantix.common.errors import Conflict
from limiquantix.common.images import ImageRecord, ImageState
from limiquantix.common.model import Model, utcnow
from limiquantix.image_library.store import ImageStore

log = structlog.get_logger()


class CatalogEntry(Model, frozen=True, kw_only=True):
    id: str
    name: str
    os: str
    version: str
    format: str
    source_url: str
    checksums_url: str = ""
    file_size: int
    virtual_size: int
    default_user: str
    min_disk_gib: int = 0


class _Catalog(msgspec.Struct, frozen=True):
    entries: tuple[CatalogEntry, ...]


def shipped_entries() -> tuple[CatalogEntry, ...]:
    """The entries of the catalog.json shipped in this package."""
    data = importlib.resources.files("limiquantix.image_library").joinpath("catalog.json")
    return msgspec.json.decode(data.read_bytes(), type=_Catalog).entries


def remote_record(entry: CatalogEntry) -> ImageRecord:
    """The record of a catalog entry that has not been imported."""
    now = utcnow()
    return ImageRecord(
        id=entry.id, name=entry.name, os=entry.os, version=entry.version, format=entry.format,
        virtual_size=entry.virtual_size, file_size=entry.file_size,
        default_user=entry.default_user, source_url=entry.source_url,
        state=ImageState.REMOTE, catalog_id=entry.id, min_disk_gib=entry.min_disk_gib,
        labels={"checksums_url": entry.checksums_url} if entry.checksums_url else {},
        created_at=now, updated_at=now,
    )


def find_entry(catalog_id: str, mirror: str = "") -> CatalogEntry | None:
    """The shipped entry ``catalog_id`` (its URL on ``mirror`` when one is set), or None."""
    entry = next((e for e in shipped_entries() if e.id == catalog_id), None)
    return with_mirror(entry, mirror) if entry is not None else None


def with_mirror(entry: CatalogEntry, mirror: str) -> CatalogEntry:
    """The entry with its file at ``<mirror>/<id>.<format>`` (LQ_CATALOG_MIRROR), for sites
    that keep the catalog's images on their own server (offline, or closer)."""
    if not mirror:
        return entry
    url = f"{mirror.rstrip('/')}/{entry.id}.{entry.format}"
    return msgspec.structs.replace(entry, source_url=url)


async def seed(store: ImageStore, mirror: str = "") -> None:
    """Add missing entries; refresh entries still ``remote`` (an imported one is left alone)."""
    for shipped in shipped_entries():
        entry = with_mirror(shipped, mirror)
        fresh = remote_record(entry)
        try:
            await store.create(fresh)
            continue
        except Conflict:
            pass

        def refresh(current: ImageRecord, fresh: ImageRecord = fresh) -> ImageRecord | None:
            same = msgspec.structs.replace(
                current, created_at=fresh.created_at, updated_at=fresh.updated_at
            ) == fresh
            if current.state not in (ImageState.REMOTE, ImageState.AVAILABLE) or same:
                return None
            return msgspec.structs.replace(fresh, created_at=current.created_at)

        await store.update(entry.id, refresh)
    log.info("catalog seeded", entries=len(shipped_entries()))
