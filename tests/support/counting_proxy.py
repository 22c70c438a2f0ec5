"""A counting HTTP proxy in front of the image library: proves how many downloads happened,
and (with a ``rate``) slows them down so a test can cut one in the middle."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

_PASSED_HEADERS = ("Content-Length", "Content-Range", "X-Checksum-Sha256", "ETag",
                   "Content-Type")


class CountingProxy:
    """Forwards to the image library, counts the requests it sees by path and keeps their
    ``Range`` headers; at most ``rate`` bytes/s when given. While the upstream is down it
    answers 502, as a load balancer in front of a restarting library would."""

    def __init__(self, upstream: str, rate: int = 0) -> None:
        self.upstream = upstream
        self.rate = rate
        self.hits: collections.Counter[str] = collections.Counter()
        self.ranges: list[str] = []
        self.url = ""

    def requested(self, path: str, times: int) -> bool:
        """``path`` was asked for at least ``times`` times (a poll's check)."""
        return self.hits[path] >= times

    async def forward(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        if "Range" in request.headers:
            self.ranges.append(request.headers["Range"])
        # Range and the node's image library token are passed on, as a real proxy would.
        headers = {n: request.headers[n] for n in ("Range", "Authorization")
                   if n in request.headers}
        try:
            async with aiohttp.ClientSession() as http, http.get(
                self.upstream + request.path_qs, headers=headers,
            ) as upstream:
                response = web.StreamResponse(status=upstream.status)
                for name in _PASSED_HEADERS:
                    if name in upstream.headers:
                        response.headers[name] = upstream.headers[name]
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(64 << 10 if self.rate
                                                                 else 1 << 20):
                    await response.write(chunk)
                    if self.rate:
                        await asyncio.sleep(len(chunk) / self.rate)  # the throttle itself
                await response.write_eof()
                return response
        except aiohttp.ClientConnectorError:
            return web.Response(status=502, text="upstream down")


async def start_proxy(upstream: str, rate: int = 0) -> AsyncIterator[CountingProxy]:
    """Run a CountingProxy (``rate``: bytes/s, 0 for no limit) on a free loopback port for the
    duration of the generator."""
    counting = CountingProxy(upstream, rate)
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
