"""A counting HTTP proxy in front of the image library: proves how many downloads happened."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web


class CountingProxy:
    """Forwards to the image library and counts the file requests it sees."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.hits: collections.Counter[str] = collections.Counter()
        self.url = ""

    async def forward(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        # Range and the node's image library token are passed on, as a real proxy would.
        headers = {n: request.headers[n] for n in ("Range", "Authorization")
                   if n in request.headers}
        async with aiohttp.ClientSession() as http, http.get(
            self.upstream + request.path_qs, headers=headers,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for name in ("Content-Length", "X-Checksum-Sha256", "ETag", "Content-Type"):
                if name in upstream.headers:
                    response.headers[name] = upstream.headers[name]
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(1 << 20):
                await response.write(chunk)
            await response.write_eof()
            return response


async def start_proxy(upstream: str) -> AsyncIterator[CountingProxy]:
    """Run a CountingProxy on a free loopback port for the duration of the generator."""
    counting = CountingProxy(upstream)
    app = web.Application()
    app.router.add_get("/{tail:.*}", counting.forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    counting.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        yield counting
    finally:
        await runner.cleanup()
