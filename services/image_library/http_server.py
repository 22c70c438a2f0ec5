"""The image library's own HTTP server: image files (Range, ETag, sendfile) and uploads.

Nodes download from here and the gateway proxies here; it listens on
``LQ_IMAGE_LIBRARY_HOST:PORT`` (loopback by default; put it on a management network only).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from limiquantix.common.errors import ErrorReply, LimiquantixError
from limiquantix.common.images import ImageState, image_encoder
from limiquantix.image_library.errors import ImageNotActive
from limiquantix.image_library.service import ImageService
from limiquantix.image_library.uploads import CHECKSUM_HEADER, receive_upload

log = structlog.get_logger()

SERVICE = web.AppKey("image_service", ImageService)
SHUTDOWN_TIMEOUT_S = 10.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(error: ErrorReply) -> web.Response:
    """An error as ``application/problem+json`` with its stable ``code``."""
    return web.Response(
        status=error.status, body=image_encoder.encode(error),
        content_type="application/problem+json",
    )


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LimiquantixError as exc:
        return problem(exc.to_reply())
    except web.HTTPException:
        raise
    except Exception:
        log.exception("request failed", path=request.path, method=request.method)
        return problem(ErrorReply(code="internal", message="internal error", status=500))


async def get_file(request: web.Request) -> web.StreamResponse:
    """The image file: sendfile, ``Range`` (206/416), ``ETag``, sha256 in a header."""
    service = request.app[SERVICE]
    record = await service.get(request.match_info["image_id"])
    path = service.layout.file(record.id)
    if record.state != ImageState.ACTIVE or not path.exists():
        raise ImageNotActive(f"image {record.id!r} is {record.state}", state=record.state)
    return web.FileResponse(path, chunk_size=1 << 20, headers={
        CHECKSUM_HEADER: record.sha256,
        "Content-Type": "application/octet-stream",
        "Cache-Control": "no-transform",
    })


async def put_file(request: web.Request) -> web.Response:
    """Stream the body into an upload record; 200 with the record once it is active."""
    service = request.app[SERVICE]
    record = await receive_upload(service, request.match_info["image_id"], request)
    return web.Response(body=image_encoder.encode(record), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app(service: ImageService) -> web.Application:
    """The aiohttp application (no body size limit: uploads are streamed)."""
    app = web.Application(middlewares=[errors_middleware], client_max_size=1 << 20)
    app[SERVICE] = service
    app.router.add_get("/images/{image_id}/file", get_file)  # also answers HEAD
    app.router.add_put("/images/{image_id}/file", put_file)
    app.router.add_get("/healthz", healthz)
    return app
