"""The image library's own HTTP server: image files (Range, ETag, sendfile) and uploads.

Nodes download from here and the gateway proxies here; it listens on
``LQ_IMAGE_LIBRARY_HOST:PORT`` (loopback by default; put it on a management network only).
Every ``/images/...`` request carries a short-lived token signed with the shared secret
(:mod:`limiquantix.common.library_tokens`) for that image and method; ``/healthz`` needs none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from limiquantix.common.errors import ErrorReply, LimiquantixError
from limiquantix.common.images import ImageState, image_encoder
from limiquantix.common.library_tokens import LibraryClaims, LibraryUnauthorized, verify
from limiquantix.common.metrics import metrics_response
from limiquantix.image_library import metrics
from limiquantix.image_library.errors import ImageNotActive, NotUploader
from limiquantix.image_library.service import ImageService
from limiquantix.image_library.uploads import CHECKSUM_HEADER, receive_upload

log = structlog.get_logger()

SERVICE = web.AppKey("image_service", ImageService)
SECRET = web.AppKey("library_secret", bytes)
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


def _claims(request: web.Request) -> LibraryClaims:
    """The verified token of this request (401 when absent or not valid for it)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise LibraryUnauthorized("missing image library token")
    return verify(request.app[SECRET], token.strip(), image_id=request.match_info["image_id"],
                  method=request.method)


async def get_file(request: web.Request) -> web.StreamResponse:
    """The image file: sendfile, ``Range`` (206/416), ``ETag``, sha256 in a header."""
    _claims(request)
    service = request.app[SERVICE]
    record = await service.get(request.match_info["image_id"])
    path = service.layout.file(record.id)
    replica = service.layout.replica
    if record.state == ImageState.ACTIVE and replica is not None and not path.exists():
        await replica.ensure_local(record.id)  # another instance imported it
    if record.state != ImageState.ACTIVE or not path.exists():
        raise ImageNotActive(f"image {record.id!r} is {record.state}", state=record.state)
    metrics.IMAGE_FILES_SERVED.labels(request.method).inc()
    return web.FileResponse(path, chunk_size=1 << 20, headers={
        CHECKSUM_HEADER: record.sha256,
        "Content-Type": "application/octet-stream",
        "Cache-Control": "no-transform",
    })


async def put_file(request: web.Request) -> web.Response:
    """Stream the body into an upload record; 200 with the record once it is active."""
    claims = _claims(request)
    service = request.app[SERVICE]
    image_id = request.match_info["image_id"]
    if (await service.get(image_id)).created_by != claims.sub:
        # Checked again under compare-and-set when the upload claims the record.
        raise NotUploader(f"image {image_id!r} was created by another caller")
    record = await receive_upload(service, image_id, request, uploader=claims.sub)
    return web.Response(body=image_encoder.encode(record), content_type="application/json")


async def get_metrics(request: web.Request) -> web.Response:
    return metrics_response()


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app(service: ImageService, secret: bytes) -> web.Application:
    """The aiohttp application (no body size limit: uploads are streamed)."""
    app = web.Application(middlewares=[errors_middleware], client_max_size=1 << 20)
    app[SERVICE] = service
    app[SECRET] = secret
    app.router.add_get("/images/{image_id}/file", get_file)  # also answers HEAD
    app.router.add_put("/images/{image_id}/file", put_file)
    app.router.add_get("/healthz", healthz)
    # Unauthenticated like /healthz: the port is the cluster's, counts hold no image data.
    app.router.add_get("/metrics", get_metrics)
    return app
