"""A tiny TCP load balancer on loopback: what a Kubernetes Service does for two gateway pods.

Each accepted connection goes to the next backend in turn (round robin per connection, as
kube-proxy balances connections, not requests) and bytes are piped both ways until either side
closes. HTTP keep-alive therefore sticks a client's requests to one gateway for as long as its
connection lives; tests that want every request on another gateway open a connection each
(``aiohttp.TCPConnector(force_close=True)``). SSE streams and WebSockets are ordinary
long-lived connections here. A backend that refuses the connection is skipped for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence

CHUNK = 1 << 16


class LoadBalancer:
    """``async with LoadBalancer([(host, port), ...]) as lb``: listening on ``lb.url``."""

    def __init__(self, backends: Sequence[tuple[str, int]], host: str = "127.0.0.1") -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the test load balancer listens on loopback only")
        self.backends = list(backends)
        self._host = host
        self._turn = itertools.cycle(range(len(self.backends)))
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0
        self.connections = [0] * len(self.backends)  # accepted connections sent to each backend

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    async def __aenter__(self) -> LoadBalancer:
        self._server = await asyncio.start_server(self._accept, self._host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._pipes):
            task.cancel()
        for task in list(self._pipes):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        last: OSError | None = None
        for _ in range(len(self.backends)):
            index = next(self._turn)
            host, port = self.backends[index]
            try:
                streams = await asyncio.open_connection(host, port)
            except OSError as exc:  # that gateway is down: the next one takes the connection
                last = exc
                continue
            self.connections[index] += 1
            return streams
        raise last or OSError("no backend")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            try:
                up_reader, up_writer = await self._connect()
            except OSError:
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            self._pipes.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


@contextlib.asynccontextmanager
async def balanced(backends: Sequence[str]) -> AsyncIterator[LoadBalancer]:
    """A load balancer in front of ``http://127.0.0.1:PORT`` URLs."""
    pairs = []
    for url in backends:
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        pairs.append((host, int(port)))
    async with LoadBalancer(pairs) as lb:
        yield lb
