"""Typed NATS client of the image library, for the gateway and the node agents.

Each call is one request on ``subjects.image_rpc(op)``; an error reply becomes a
``RemoteError`` carrying the library's code, message and hint; no answer becomes Unavailable.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from nats.aio.client import Client

from limiquantix.common import images, rpc, subjects
from limiquantix.common.errors import Unavailable
from limiquantix.common.images import (
    CreateImageRequest,
    ImageDeleted,
    ImageList,
    ImageRecord,
    ImageRef,
    ListImages,
)

T = TypeVar("T")


class ImageLibraryClient:
    """``await client.get(image_id)`` and friends."""

    def __init__(self, nc: Client, *, timeout_s: float = 5.0) -> None:
        self._nc = nc
        self._timeout_s = timeout_s

    async def _call(self, operation: str, body: msgspec.Struct, reply_type: type[T],
                    headers: dict[str, str] | None = None) -> T:
        try:
            return await rpc.request(self._nc, subjects.image_rpc(operation), body, reply_type,
                                     timeout_s=self._timeout_s, headers=headers)
        except Unavailable:
            raise Unavailable(
                f"the image library did not answer {operation!r} within {self._timeout_s:g} s",
                hint="Check that lq-image-library is running and connected to NATS.",
            ) from None

    async def list(self, query: ListImages | None = None) -> ImageList:
        return await self._call(images.RPC_LIST, query or ListImages(), ImageList)

    async def get(self, image_id: str) -> ImageRecord:
        return await self._call(images.RPC_GET, ImageRef(id=image_id), ImageRecord)

    async def import_image(self, request: CreateImageRequest) -> ImageRecord:
        return await self._call(images.RPC_IMPORT, request, ImageRecord)

    async def create_upload(self, request: CreateImageRequest, *,
                            created_by: str = "") -> ImageRecord:
        """An upload record; only ``created_by`` (an API caller) may PUT its file."""
        headers = {images.RPC_CREATED_BY_HEADER: created_by} if created_by else None
        return await self._call(images.RPC_CREATE_UPLOAD, request, ImageRecord, headers)

    async def delete(self, image_id: str) -> ImageDeleted:
        return await self._call(images.RPC_DELETE, ImageRef(id=image_id), ImageDeleted)
