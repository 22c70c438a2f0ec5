"""A real webhook receiver (aiohttp on 127.0.0.1) that checks every signature it gets."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SECRET = "receiver-shared-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Received:
    """One POST the receiver took."""

    event: dict[str, Any]
    signature_ok: bool
    content_type: str


@dataclass
class Receiver:
    """``url`` is fixed from the start; nothing listens there until :meth:`start` (down)."""

    secret: str = SECRET
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    failing_subjects: set[str] = field(default_factory=set)  # answered 500, not recorded
    hold_next: int = 0  # that many requests wait for ``release`` (then 503), not recorded
    held: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hold_next > 0:
            self.hold_next -= 1
            self.held += 1
            await self.release.wait()
            return web.Response(status=503)
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        given = request.headers.get("X-Limiquantix-Signature", "")
        event = json.loads(body)
        if event.get("subject") in self.failing_subjects:
            return web.Response(status=500, text="receiver refuses this one")
        self.received.append(Received(event=event,
                                      signature_ok=hmac.compare_digest(expected, given),
                                      content_type=request.content_type))
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, count: int, timeout_s: float = 30.0) -> list[Received]:
        """Poll until at least ``count`` POSTs arrived."""
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} of {count} deliveries after "
                                     f"{timeout_s} s: {[r.event.get('id') for r in self.received]}")
            await asyncio.sleep(0.05)
        return list(self.received)
