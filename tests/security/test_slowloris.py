"""Row 7 of issue 10: half-open connections (slowloris) are closed within the header timeout,
cannot hold the servers' descriptors, and ``/healthz`` keeps answering meanwhile.

Both real servers, started by their own ``serve()`` with settings, in this process (so their
descriptors are ours to count): the image library and the API gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from limiquantix.api.main import serve as serve_api
from limiquantix.common import settings as settings_mod
from limiquantix.common.nats_server import NatsServer, free_port
from tests.support.security import make_library

HALF_OPEN = 200
HEADER_TIMEOUT_S = 2.0
HEALTHZ_S = 2.0  # answered within ms when idle; slack for a loaded 2-core CI machine
# A head that never ends: one header line begun, never finished.
PARTIAL_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a"

Serve = Callable[..., Awaitable[str]]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _healthz(url: str) -> float:
    """Seconds /healthz took to answer 200."""
    started = time.monotonic()
    async with aiohttp.ClientSession() as http, http.get(
        url + "/healthz", timeout=aiohttp.ClientTimeout(total=5),
    ) as response:
        assert response.status == 200
    return time.monotonic() - started


async def _wait_closed(reader: asyncio.StreamReader) -> None:
    """Until the server closes the connection (EOF, or a 503 then EOF, or a reset)."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(4096):
            pass


@pytest.fixture
async def library_url(tmp_path: Path, nats_server: NatsServer,
                      request: pytest.FixtureRequest) -> AsyncIterator[str]:
    library = make_library(tmp_path / "library", nats_server,
                           http_header_timeout_s=HEADER_TIMEOUT_S,
                           http_max_connections=request.param)
    await library.start()
    yield library.url
    await library.stop()


@pytest.fixture
async def api_url(tmp_path: Path, nats_server: NatsServer, nc: object,
                  request: pytest.FixtureRequest) -> AsyncIterator[str]:
    port = free_port()
    creds = ({"nats_creds": str(nats_server.creds_for("api"))} if nats_server.auth else {})
    settings = settings_mod.load({}, nats_url=nats_server.url, data_dir=str(tmp_path / "api"),
                                 api_port=port, api_token="t" * 32, **creds,
                                 http_header_timeout_s=HEADER_TIMEOUT_S,
                                 http_max_connections=request.param)
    stop = asyncio.Event()
    task = asyncio.create_task(serve_api(settings, stop))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            await _healthz(url)
            break
        except (aiohttp.ClientError, AssertionError):
            if task.done() or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    yield url
    stop.set()
    await asyncio.wait_for(task, 30)


async def _slowloris(url: str) -> None:
    baseline = _fds()
    port = int(url.rsplit(":", 1)[1])
    connections = []
    opened = time.monotonic()
    for _ in range(HALF_OPEN):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(PARTIAL_HEAD)
        connections.append((reader, writer))
    await asyncio.gather(*(w.drain() for _, w in connections))
    # During the attack a real client is served at once.
    during = await _healthz(url)
    assert during < HEALTHZ_S
    # The server ends every half-open connection by itself within the header timeout.
    await asyncio.wait_for(asyncio.gather(*(_wait_closed(r) for r, _ in connections)),
                           HEADER_TIMEOUT_S + 5)
    closed_after = time.monotonic() - opened
    print(f"{HALF_OPEN} half-open connections closed {closed_after:.2f} s after opening "
          f"(header timeout {HEADER_TIMEOUT_S:g} s); /healthz during: {during * 1000:.1f} ms")
    for _, writer in connections:
        writer.close()
    assert closed_after < HEADER_TIMEOUT_S + 5
    # Nothing of them is left in the process (ours and the server's ends, both closed).
    deadline = time.monotonic() + 5
    while _fds() > baseline + 5 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert _fds() <= baseline + 5, (baseline, _fds())
    assert await _healthz(url) < HEALTHZ_S


@pytest.mark.parametrize("library_url", [512, 64], indirect=True,
                         ids=["under-the-cap", "past-the-cap"])
async def test_half_open_connections_to_the_image_library_are_closed(library_url: str) -> None:
    await _slowloris(library_url)


@pytest.mark.parametrize("api_url", [512, 64], indirect=True,
                         ids=["under-the-cap", "past-the-cap"])
async def test_half_open_connections_to_the_api_are_closed(api_url: str) -> None:
    await _slowloris(api_url)
