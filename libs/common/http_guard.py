"""Bounded HTTP serving for both aiohttp servers (the gateway and the image library).

Without bounds one unauthenticated peer could open thousands of connections that never finish
their request head (slowloris) and hold the server's file descriptors until ``/healthz`` fails.
So:

- **header timeout**: aiohttp closes a connection whose handler is idle — no complete request
  head yet, or idle between keep-alive requests — when its keep-alive timer fires, and that
  timer starts when the connection opens. Setting it to ``LQ_HTTP_HEADER_TIMEOUT_S`` makes it
  the time a peer has to send a request head. Requests being handled (uploads, SSE streams,
  downloads) are not idle and are not affected.
- **bounded lines and headers**: aiohttp's parser limits, stated here.
- **connection cap** (``LQ_HTTP_MAX_CONNECTIONS``): at the cap, the oldest *idle* connection
  is closed to make room (a slowloris connection is idle by definition, so a real client still
  gets in); when every connection is busy with a request, the new one gets ``503`` and is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = structlog.get_logger()

MAX_LINE_SIZE = 8190
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 100
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
         b"Content-Length: 0\r\n\r\n")


def runner_options(*, header_timeout_s: float) -> dict[str, Any]:
    """Keyword arguments for ``web.AppRunner`` (passed on to every connection's handler)."""
    return {"keepalive_timeout": header_timeout_s, "max_line_size": MAX_LINE_SIZE,
            "max_field_size": MAX_FIELD_SIZE, "max_headers": MAX_HEADERS}


def _idle(handler: RequestHandler) -> bool:
    """No request being handled and none queued (waiting for, or reading, a request head)."""
    return not handler._request_in_progress and not handler._messages


class _Busy(asyncio.Protocol):
    """Answers 503 and closes: every connection slot is handling a request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_BUSY)
        transport.close()


class _ConnectionCap:
    """Protocol factory in front of aiohttp's: enforces the connection cap."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self._server = server
        self._limit = limit
        self.evicted = 0
        self.refused = 0

    def __call__(self) -> asyncio.BaseProtocol:
        connections = self._server.connections  # oldest first
        if len(connections) >= self._limit:
            victim = next((h for h in connections if _idle(h)), None)
            if victim is None:
                self.refused += 1
                if self.refused % 100 == 1:
                    log.warning("http connection refused: every slot busy", limit=self._limit,
                                refused=self.refused)
                return _Busy()
            victim.force_close()
            self.evicted += 1
            if self.evicted % 100 == 1:
                log.warning("idle http connection closed for a new one", limit=self._limit,
                            evicted=self.evicted)
        return self._server()


class GuardedSite(web.TCPSite):
    """``web.TCPSite`` whose connections go through :class:`_ConnectionCap`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, *,
                 max_connections: int) -> None:
        super().__init__(runner, host, port)
        self._max_connections = max_connections
        self.cap: _ConnectionCap | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; TCPSite.start would listen
        server = self._runner.server
        assert server is not None
        self.cap = _ConnectionCap(server, self._max_connections)
        self._server = await asyncio.get_running_loop().create_server(
            self.cap, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port,
        )
        if self._server.sockets:  # port 0: the port the kernel chose
            self._bound_port = self._server.sockets[0].getsockname()[1]
