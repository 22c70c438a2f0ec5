"""``/v1/images``: the image catalog (NATS RPC to the image library) and image files (HTTP proxy).

``POST /v1/images`` does one of three things, by its body:

- ``{"catalog_id": "debian-12"}``: import a shipped catalog entry from its official URL (add
  ``source_url`` to import it from a mirror instead); 202, the record is ``queued``.
- ``{"source_url": "https://...", "name": ..., "sha256": ...}``: import from a URL; 202.
- ``{"name": ...}`` (neither): an upload record; 201, then ``PUT /v1/images/{id}/file``.

File bodies are streamed through (never buffered): uploads to the image library's ``PUT``,
downloads from its ``GET`` with ``Range``/``If-Range`` passed on and 206/416 passed back. Each
proxied request carries a short-lived token for that image and method (library_tokens.py); an
upload's token names the caller, and the library takes the file only from the record's creator.
The ``{image}`` path segment must be an image id (a DNS label) before it goes anywhere near the
library's URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from urllib.parse import quote

import aiohttp
import msgspec
from aiohttp import web

from limiquantix.api import app_keys
from limiquantix.api.auth import principal_of
from limiquantix.api.http_json import decode_body, json_response
from limiquantix.api.openapi import OpenApiPart, Operation, Param
from limiquantix.common.errors import InvalidRequest, Unavailable
from limiquantix.common.ids import ImageId
from limiquantix.common.images import (
    CreateImageRequest,
    ImageDeleted,
    ImageList,
    ImageRecord,
    ListImages,
)
from limiquantix.common.library_tokens import bearer, sign
from limiquantix.image_library.client import ImageLibraryClient
from limiquantix.image_library.errors import ImageInUse

IMAGE_HTTP = web.AppKey("image_http", aiohttp.ClientSession)

CHUNK = 1 << 20
# Headers passed on between the client and the image library's file endpoint.
REQUEST_HEADERS = ("Range", "If-Range", "If-None-Match", "If-Modified-Since", "Content-Length",
                   "X-Checksum-Sha256", "Content-Type")
RESPONSE_HEADERS = ("Content-Length", "Content-Range", "Content-Type", "ETag", "Last-Modified",
                    "Accept-Ranges", "X-Checksum-Sha256", "Cache-Control")


def _client(request: web.Request) -> ImageLibraryClient:
    settings = request.app[app_keys.SETTINGS]
    return ImageLibraryClient(request.app[app_keys.NATS], timeout_s=settings.request_timeout_s)


def _image_id(request: web.Request) -> str:
    """The ``{image}`` path segment, checked to be an image id (422 otherwise)."""
    value = request.match_info["image"]
    try:
        return msgspec.convert(value, ImageId)
    except msgspec.ValidationError:
        raise InvalidRequest(
            f"{value[:80]!r} is not an image id",
            hint="Image ids are UUIDs or catalog ids such as 'debian-12' (GET /v1/images).",
        ) from None


def _file_url(request: web.Request, image_id: str) -> str:
    base = request.app[app_keys.SETTINGS].effective_image_library_url
    return f"{base}/images/{quote(image_id, safe='')}/file"


def _library_auth(request: web.Request, image_id: str, method: str) -> dict[str, str]:
    """The header authorising this proxied request at the image library."""
    token = sign(request.app[app_keys.LIBRARY_SECRET], service="gateway", image_id=image_id,
                 method=method, subject=principal_of(request).id)
    return bearer(token)


async def list_images(request: web.Request) -> web.Response:
    """GET /v1/images?state=&format=&os=."""
    query = ListImages(state=request.query.get("state", ""),
                       format=request.query.get("format", ""), os=request.query.get("os", ""))
    return json_response(await _client(request).list(query))


async def get_image(request: web.Request) -> web.Response:
    """GET /v1/images/{image}."""
    return json_response(await _client(request).get(_image_id(request)))


async def create_image(request: web.Request) -> web.Response:
    """POST /v1/images: import (catalog id or URL) or create an upload record."""
    body = await decode_body(request, CreateImageRequest)
    client = _client(request)
    if body.catalog_id or body.source_url:
        record = await client.import_image(body)
        status = 202
    else:
        record = await client.create_upload(body, created_by=principal_of(request).id)
        status = 201
    return json_response(record, status=status, headers={"Location": f"/v1/images/{record.id}"})


async def delete_image(request: web.Request) -> web.Response:
    """DELETE /v1/images/{image}: cancels an import; 409 ``image_in_use`` while VMs use it."""
    image_id = _image_id(request)
    users = sorted(vm.id for vm in await request.app[app_keys.VM_STORE].all()
                   if vm.image == image_id)
    if users:
        raise ImageInUse(f"image {image_id!r} is used by {len(users)} VM(s)", vms=users)
    return json_response(await _client(request).delete(image_id))


def _pass_headers(source: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {name: source[name] for name in names if name in source}


async def download_file(request: web.Request) -> web.StreamResponse:
    """GET/HEAD /v1/images/{image}/file: the image library's answer, streamed through."""
    http = request.app[IMAGE_HTTP]
    image_id = _image_id(request)
    url = _file_url(request, image_id)
    headers = _pass_headers(request.headers, REQUEST_HEADERS)
    headers.update(_library_auth(request, image_id, "GET"))
    try:
        async with http.request(request.method, url, headers=headers) as upstream:
            response = web.StreamResponse(
                status=upstream.status, headers=_pass_headers(upstream.headers, RESPONSE_HEADERS),
            )
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in upstream.content.iter_chunked(CHUNK):
                    await response.write(chunk)
            await response.write_eof()
            return response
    except aiohttp.ClientConnectionError as exc:
        raise Unavailable(f"the image library is unreachable: {exc}") from None


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(CHUNK):
        yield chunk


async def upload_file(request: web.Request) -> web.Response:
    """PUT /v1/images/{image}/file: the body streamed to the image library, its answer back."""
    http = request.app[IMAGE_HTTP]
    image_id = _image_id(request)
    url = _file_url(request, image_id)
    headers = _pass_headers(request.headers, REQUEST_HEADERS)
    headers.update(_library_auth(request, image_id, "PUT"))
    try:
        async with http.put(url, data=_body(request), headers=headers) as upstream:
            payload = await upstream.read()
            return web.Response(
                status=upstream.status, body=payload,
                content_type=upstream.content_type or "application/json",
            )
    except aiohttp.ClientConnectionError as exc:
        raise Unavailable(f"the image library is unreachable: {exc}") from None


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    """One HTTP client to the image library for the gateway's lifetime."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)
    # Idle pooled connections are dropped well before the library closes them (its keep-alive
    # limit is LQ_HTTP_HEADER_TIMEOUT_S): reusing one the server is closing fails the request.
    keepalive_s = app[app_keys.SETTINGS].http_header_timeout_s / 3
    connector = aiohttp.TCPConnector(keepalive_timeout=keepalive_s)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False,
                                     connector=connector) as session:
        app[IMAGE_HTTP] = session
        yield


_STATE = Param(name="state", description="remote, queued, downloading, ..., active, error")
_FORMAT = Param(name="format", description="qcow2, raw or iso")
_OS = Param(name="os", description="e.g. ubuntu, debian, rocky, almalinux")

OPENAPI = OpenApiPart(tag="images", operations=(
    Operation(method="GET", path="/v1/images", summary="Images, filtered by state/format/os",
              response=ImageList, params=(_STATE, _FORMAT, _OS)),
    Operation(method="POST", path="/v1/images",
              summary="Import a catalog entry or a URL (202), or create an upload record (201)",
              body=CreateImageRequest, response=ImageRecord, status=202,
              errors=(403, 404, 409, 422),
              description=__doc__ or ""),
    Operation(method="GET", path="/v1/images/{image}", summary="One image", response=ImageRecord,
              errors=(404, 422)),
    Operation(method="DELETE", path="/v1/images/{image}",
              summary="Delete (or cancel the import of) an image; catalog entries become "
                      "remote again", response=ImageDeleted, errors=(403, 404, 409, 422)),
    Operation(method="GET", path="/v1/images/{image}/file",
              summary="The image file (Range, ETag, X-Checksum-Sha256)",
              media_type="application/octet-stream", errors=(404, 409, 416, 422),
              params=(Param(name="Range", where="header"),)),
    Operation(method="PUT", path="/v1/images/{image}/file",
              summary="Upload the file of an upload record (streamed; optional "
                      "X-Checksum-Sha256); only by the caller who created the record",
              response=ImageRecord, errors=(403, 404, 409, 422),
              params=(Param(name="X-Checksum-Sha256", where="header"),)),
))


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/images", list_images)
    app.router.add_post("/v1/images", create_image)
    app.router.add_get("/v1/images/{image}", get_image)
    app.router.add_delete("/v1/images/{image}", delete_image)
    app.router.add_get("/v1/images/{image}/file", download_file)
    app.router.add_put("/v1/images/{image}/file", upload_file)
    app.cleanup_ctx.append(_http_ctx)
