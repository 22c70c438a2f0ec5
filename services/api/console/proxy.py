"""The byte pipe between a console WebSocket and a VNC TCP connection.

Two pumps, one per direction, each reading only after the other side accepted the previous chunk,
so a slow browser or a slow VNC server stops the reads on the other side instead of growing a
buffer: the TCP side is bounded by the stream reader's limit and ``drain()``, the WebSocket side
by aiohttp's reader queue (it pauses the socket when full) and its writer's drain.
A third task enforces the idle timeout and the maximum session length. Whatever ends first sets
the close code and reason once; the other tasks are cancelled and both connections closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

from aiohttp import WSMsgType, web

# Close codes (RFC 6455): the ones a console session ends with.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003
CLOSE_ABNORMAL = 1006  # recorded only: the client vanished, no close frame could be sent
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011

# Largest chunk read from VNC and sent as one frame; big reads carry bulk framebuffer data with
# few frames, and a read returns whatever is buffered, so small messages are not delayed.
READ_SIZE = 256 * 1024
# The TCP stream reader pauses the socket when it holds twice this much (the bound on buffering).
STREAM_LIMIT = 256 * 1024
CLOSE_TIMEOUT_S = 2.0
MAX_REASON_BYTES = 123  # a close frame's reason must fit in a control frame


@dataclass
class PipeResult:
    """How a session went: bytes each way and how it was closed."""

    bytes_to_vnc: int = 0
    bytes_to_client: int = 0
    close_code: int = CLOSE_NORMAL
    reason: str = ""


def set_nodelay(writer: asyncio.StreamWriter | asyncio.BaseTransport) -> None:
    """TCP_NODELAY: RFB is interactive, a keystroke must not wait for Nagle."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def clip_reason(reason: str) -> str:
    """A close reason that fits a close frame (UTF-8, at most 123 bytes)."""
    encoded = reason.encode()
    if len(encoded) <= MAX_REASON_BYTES:
        return reason
    return encoded[:MAX_REASON_BYTES].decode(errors="ignore")


class ConsolePipe:
    """Pipes one prepared WebSocket and one VNC connection until either ends."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        idle_timeout_s: float,
        max_session_s: float,
        client_transport: asyncio.BaseTransport | None = None,
    ) -> None:
        self._ws = ws
        self._client_transport = client_transport
        self._reader = reader
        self._writer = writer
        self._idle_timeout_s = idle_timeout_s
        self._max_session_s = max_session_s
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._ended = asyncio.Event()
        self.result = PipeResult()

    def end(self, code: int, reason: str) -> None:
        """End the session with ``code``/``reason``; only the first call counts."""
        if self._ended.is_set():
            return
        self.result.close_code = code
        self.result.reason = reason
        self._ended.set()

    def buffered(self) -> tuple[int, int]:
        """Bytes waiting in this process's write buffers: (to VNC, to the client)."""
        to_vnc = self._writer.transport.get_write_buffer_size()
        transport = self._client_transport
        to_client = (
            transport.get_write_buffer_size()
            if isinstance(transport, asyncio.WriteTransport) else 0
        )
        return to_vnc, to_client

    def sockets(self) -> list[socket.socket]:
        """The client and VNC sockets (to check their options)."""
        found = [self._writer.get_extra_info("socket")]
        if self._client_transport is not None:
            found.append(self._client_transport.get_extra_info("socket"))
        return [s for s in found if s is not None]

    async def run(self) -> PipeResult:
        """Pipe until one side closes, a limit is reached or :meth:`end` is called."""
        tasks = [
            asyncio.create_task(self._client_to_vnc(), name="console-client-to-vnc"),
            asyncio.create_task(self._vnc_to_client(), name="console-vnc-to-client"),
            asyncio.create_task(self._limits(), name="console-limits"),
        ]
        try:
            await self._ended.wait()
        finally:
            self.end(CLOSE_GOING_AWAY, "session cancelled")  # no-op unless cancelled
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._close_both()
        return self.result

    async def _client_to_vnc(self) -> None:
        ws, writer = self._ws, self._writer
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.BINARY:
                data: bytes = msg.data
                writer.write(data)
                self.result.bytes_to_vnc += len(data)
                self._last_activity = self._loop.time()
                try:
                    await writer.drain()
                except ConnectionError as exc:
                    self.end(CLOSE_INTERNAL, f"VNC connection failed: {exc}")
                    return
            elif msg.type is WSMsgType.TEXT:
                # RFB is binary; the old base64 text protocol of websockify is not spoken here.
                self.end(CLOSE_UNSUPPORTED, "binary frames only")
                return
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                code = ws.close_code or CLOSE_NORMAL
                self.end(code, "client closed the connection")
                return
            elif msg.type is WSMsgType.ERROR:
                # A protocol error (e.g. 1009 message too big) keeps its code; aiohttp already
                # sent the close frame. A lost connection has none (1006, recorded only).
                error = ws.exception()
                error_code = getattr(error, "code", None)
                self.end(error_code if isinstance(error_code, int) else CLOSE_ABNORMAL,
                         f"client connection failed: {error}")
                return

    async def _vnc_to_client(self) -> None:
        reader, ws = self._reader, self._ws
        while True:
            try:
                data = await reader.read(READ_SIZE)
            except ConnectionError as exc:
                self.end(CLOSE_INTERNAL, f"VNC connection failed: {exc}")
                return
            if not data:
                self.end(CLOSE_INTERNAL, "VNC server closed the connection")
                return
            try:
                await ws.send_bytes(data)
            except ConnectionError:
                self.end(CLOSE_ABNORMAL, "client connection lost")
                return
            self.result.bytes_to_client += len(data)
            self._last_activity = self._loop.time()

    async def _limits(self) -> None:
        deadline = self._loop.time() + self._max_session_s
        while True:
            now = self._loop.time()
            idle_at = self._last_activity + self._idle_timeout_s
            if now >= deadline:
                self.end(CLOSE_NORMAL, "maximum session length reached")
                return
            if now >= idle_at:
                self.end(CLOSE_NORMAL, "idle timeout")
                return
            # Sleep to the nearer limit; traffic meanwhile only moves idle_at later.
            await asyncio.sleep(min(deadline, idle_at) - now + 0.01)

    async def _close_both(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), CLOSE_TIMEOUT_S)
        if not self._ws.closed:
            code = self.result.close_code
            if code == CLOSE_ABNORMAL:  # 1006 must never be sent on the wire
                code = CLOSE_INTERNAL
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._ws.close(code=code, message=clip_reason(self.result.reason).encode()),
                    CLOSE_TIMEOUT_S,
                )
