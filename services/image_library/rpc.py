"""The NATS request/reply face of the image library (``lq.rpc.images.<op>``, queue group).

A reply is the operation's Struct, or an error the way every RPC answers one (``common.rpc``).
"""

from __future__ import annotations

from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from limiquantix.common import images, rpc, subjects
from limiquantix.common.errors import InvalidRequest
from limiquantix.common.images import CreateImageRequest, ImageRef, ListImages
from limiquantix.image_library.service import ImageService


async def dispatch(service: ImageService, operation: str, data: bytes,
                   headers: dict[str, str] | None = None) -> Any:
    """Decode the body for ``operation`` and run it."""
    try:
        match operation:
            case images.RPC_LIST:
                return await service.list(msgspec.json.decode(data or b"{}", type=ListImages))
            case images.RPC_GET:
                return await service.get(msgspec.json.decode(data, type=ImageRef).id)
            case images.RPC_IMPORT:
                body = msgspec.json.decode(data, type=CreateImageRequest)
                return await service.import_image(body)
            case images.RPC_CREATE_UPLOAD:
                body = msgspec.json.decode(data, type=CreateImageRequest)
                created_by = (headers or {}).get(images.RPC_CREATED_BY_HEADER, "")
                return await service.create_upload(body, created_by=created_by)
            case images.RPC_DELETE:
                return await service.delete(msgspec.json.decode(data, type=ImageRef).id)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"malformed JSON: {exc}") from None
    raise InvalidRequest(f"unknown image operation {operation!r}")


async def subscribe(nc: Client, service: ImageService) -> Subscription:
    """Answer every image operation in the image library's queue group."""

    async def handle(msg: Msg) -> Any:
        return await dispatch(service, msg.subject.rsplit(".", 1)[-1], msg.data, msg.headers)

    return await rpc.serve(nc, subjects.image_rpc_all(), handle,
                           queue=subjects.IMAGE_LIBRARY_QUEUE, what="the image library")
