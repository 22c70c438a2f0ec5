"""Image files in a NATS JetStream Object Store (``LQ_IMAGE_STORE=jetstream``): a store that
survives a host.

The bucket ``lq_image_files`` (laid out by the gateway with the streams' replica count) holds
one object per active image, named by its id, with the file's SHA-256 digest checked on every
read by nats-py. Each image library instance keeps ``files/`` as a local cache of it: a file
is put into the bucket when its import or upload is verified, and an instance that does not
have it yet copies it out on the first request (through ``partial/``, renamed into place), then
serves it from disk with ``Range`` as before. So any instance serves any image, and a node whose
download was cut when one instance died resumes from another with ``Range``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import structlog
from nats.js.errors import ObjectNotFoundError
from nats.js.object_store import ObjectStore

from limiquantix.image_library.layout import StoreLayout

log = structlog.get_logger()

FILE_MODE = 0o600


class ReplicatedFiles:
    """The Object Store behind one image library's ``files/`` cache."""

    def __init__(self, objects: ObjectStore, layout: StoreLayout) -> None:
        self._objects = objects
        self._layout = layout
        self._copying: dict[str, asyncio.Lock] = {}

    async def put(self, image_id: str, path: Path) -> None:
        """Store the verified file ``path`` as the image's object (read in a thread)."""
        with open(path, "rb") as source:  # noqa: ASYNC230 - opening is instant; nats-py reads in a thread
            info = await self._objects.put(image_id, source)
        log.info("image file stored in the object store", image_id=image_id, size=info.size)

    async def has(self, image_id: str) -> bool:
        try:
            await self._objects.get_info(image_id)
        except ObjectNotFoundError:
            return False
        return True

    async def ensure_local(self, image_id: str) -> bool:
        """Copy the image's object into ``files/`` unless it is there; False when the bucket
        has no such object. Concurrent requests for one image wait for one copy."""
        target = self._layout.file(image_id)
        lock = self._copying.setdefault(image_id, asyncio.Lock())
        async with lock:
            if target.exists():
                return True
            part = self._layout.partial / f"{image_id}.fetch"
            try:
                with open(part, "wb") as out:  # noqa: ASYNC230 - nats-py writes in a thread
                    os.chmod(part, FILE_MODE)
                    await self._objects.get(image_id, writeinto=out)  # digest checked
            except ObjectNotFoundError:
                part.unlink(missing_ok=True)
                return False
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            await asyncio.to_thread(os.replace, part, target)
            log.info("image file copied from the object store", image_id=image_id)
            return True

    async def delete(self, image_id: str) -> None:
        with contextlib.suppress(ObjectNotFoundError):
            await self._objects.delete(image_id)
