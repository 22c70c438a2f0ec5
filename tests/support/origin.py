"""A local HTTP origin to import from: real aiohttp server with knobs for every failure mode.

Routes (``name`` is a file in the origin's directory):
- ``/files/{name}``: the file, with ETag, ``Range`` and ``If-Range`` (entity tag) honoured;
  ``?rate=BYTES_PER_S`` throttles it, ``?truncate=N`` closes the connection after N bytes.
- ``/status/{code}``: answers that status; ``/redirect/{hops}/{name}``: redirect chain to a file.
Every request is counted per path (``hits``), so tests can prove single downloads.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from pathlib import Path

from aiohttp import web

CHUNK = 256 * 1024
# Imports from loopback are refused by default (SSRF policy); tests import from this origin.
LOCAL_ORIGINS = "127.0.0.0/8"
ALLOW_LOCAL_ORIGINS = {"LQ_IMPORT_ALLOWED_NETWORKS": LOCAL_ORIGINS}


class Origin:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits: collections.Counter[str] = collections.Counter()
        self.ranges: list[str] = []  # Range headers received, in order
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def file_url(self, name: str, **query: int) -> str:
        q = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{self.url}/files/{name}" + (f"?{q}" if q else "")

    @staticmethod
    def etag(path: Path) -> str:
        return '"' + hashlib.sha256(path.read_bytes()).hexdigest()[:16] + '"'

    async def files(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[f"/files/{name}"] += 1
        path = self.root / name
        if not path.exists():
            raise web.HTTPNotFound()
        data = path.read_bytes()
        etag = self.etag(path)
        start = 0
        status = 200
        range_header = request.headers.get("Range", "")
        if range_header:
            self.ranges.append(range_header)
        if_range = request.headers.get("If-Range")
        if range_header.startswith("bytes=") and (if_range is None or if_range == etag):
            start = int(range_header[6:].split("-")[0])
            if start >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            status = 206
        body = data[start:]
        response = web.StreamResponse(status=status, headers={"ETag": etag})
        response.content_length = len(body)
        if status == 206:
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        await response.prepare(request)
        rate = int(request.query.get("rate", "0"))
        truncate = int(request.query.get("truncate", str(len(body))))
        sent = 0
        while sent < min(truncate, len(body)):
            piece = body[sent:min(sent + CHUNK, truncate)]
            await response.write(piece)
            sent += len(piece)
            if rate:
                await asyncio.sleep(len(piece) / rate)
        if truncate < len(body):
            assert request.transport is not None
            request.transport.close()  # cut the connection mid-body
            return response
        await response.write_eof()
        return response

    async def status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="origin says no")

    async def redirect(self, request: web.Request) -> web.Response:
        hops = int(request.match_info["hops"])
        name = request.match_info["name"]
        target = f"/redirect/{hops - 1}/{name}" if hops > 1 else f"/files/{name}"
        raise web.HTTPFound(target)

    async def __aenter__(self) -> Origin:
        app = web.Application()
        app.router.add_get("/files/{name}", self.files)
        app.router.add_get("/status/{code}", self.status)
        app.router.add_get("/redirect/{hops}/{name}", self.redirect)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()
