"""Small real TCP servers on 127.0.0.1 that stand in for a VNC display where the test is about
the pipe, not RFB: echo, a sink that never reads, a flood that writes a counted byte pattern,
a peer that greets first (a VNC display's version, another protocol's banner)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class TcpServer:
    host: str
    port: int
    written: int = 0  # bytes the handler managed to write (flood)
    received: bytearray = field(default_factory=bytearray)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # sink: start reading


_PERIOD = bytes(range(251))


def pattern(offset: int, size: int) -> bytes:
    """``size`` bytes of a pattern in which every position's byte is ``position % 251``."""
    start = offset % 251
    # Sliced from repeated periods: a byte-by-byte generator took ~0.1 s per 64 KiB chunk.
    return (_PERIOD * ((start + size) // 251 + 1))[start:start + size]


@contextlib.asynccontextmanager
async def tcp_server(kind: str, *, greeting: bytes = b"",
                     host: str = "127.0.0.1") -> AsyncIterator[TcpServer]:
    """``echo`` | ``sink`` (reads only after ``release``) | ``flood`` | ``silent`` | ``greet``
    (writes ``greeting``, then closes after the client's first words or its close)."""
    state = TcpServer(host, 0)
    chunk = pattern(0, 251 * 256)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if kind == "echo":
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            elif kind == "sink":
                await state.release.wait()
                while data := await reader.read(65536):
                    state.received += data
            elif kind == "flood":
                while True:
                    writer.write(chunk)  # a whole number of periods: the pattern continues
                    await writer.drain()
                    state.written += len(chunk)
            elif kind == "silent":
                await reader.read()
            elif kind == "greet":
                writer.write(greeting)
                await writer.drain()
                await reader.read(65536)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        state.release.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)
