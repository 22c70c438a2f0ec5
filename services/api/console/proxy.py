"""The byte pipe between a console WebSocket and a VNC TCP connection.

VNC → client: the VNC socket is read by a protocol whose ``data_received`` writes each chunk as
one binary frame straight to the client's transport while that transport's buffer has room (no
task switch per chunk: the latency of a keystroke's echo is one event-loop callback). When the
client is slow, the chunk goes to a backlog, VNC reading is paused, and a task hands the backlog
to aiohttp's ``send_bytes`` (which waits for the client to drain) before reading resumes.
Client → VNC: a task takes each message from aiohttp (whose reader pauses the client's socket
when its queue is full) and writes it to the VNC transport, waiting while that transport is above
its high-water mark. So neither side is read faster than the other accepts, and the buffering is
bounded: about ``HIGH_WATER`` plus one chunk per direction, plus aiohttp's reader queue.
A third task enforces the idle timeout and the maximum session length. Whatever ends first sets
the close code and reason once; the tasks are cancelled and both connections closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from limiquantix.api.console.vnc_handshake import authenticate, greet_client

# Close codes (RFC 6455): the ones a console session ends with.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003
CLOSE_ABNORMAL = 1006  # recorded only: the client vanished, no close frame could be sent
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011

# Write-buffer high-water mark of both transports: the bound on what waits in this process per
# direction. 1 MiB measured best in bench/console.py on a loaded 2-core machine: deep enough that
# the VNC server keeps writing while the browser is not scheduled, small enough per session.
HIGH_WATER = 1024 * 1024
# Largest frame sent to the client: 64 KiB frames cost the receiver less than 256 KiB ones (a
# frame split across socket reads is reassembled by copying); measured faster for the client.
MAX_FRAME = 64 * 1024
CLOSE_TIMEOUT_S = 2.0
MAX_REASON_BYTES = 123  # a close frame's reason must fit in a control frame

_OPCODE_BINARY_FIN = 0x82
_HEADER_SHORT = struct.Struct("!BB").pack
_HEADER_16 = struct.Struct("!BBH").pack
_HEADER_64 = struct.Struct("!BBQ").pack


def frame_header(n: int) -> bytes:
    """Header of an unmasked, uncompressed, final binary frame of ``n`` bytes (server side)."""
    if n < 126:
        return _HEADER_SHORT(_OPCODE_BINARY_FIN, n)
    if n < 65536:
        return _HEADER_16(_OPCODE_BINARY_FIN, 126, n)
    return _HEADER_64(_OPCODE_BINARY_FIN, 127, n)


def binary_frames(data: bytes) -> bytes:
    """``data`` as binary frames of at most MAX_FRAME bytes, ready to write (one copy)."""
    if len(data) <= MAX_FRAME:
        return frame_header(len(data)) + data
    view = memoryview(data)
    parts: list[bytes | memoryview] = []
    for start in range(0, len(data), MAX_FRAME):
        piece = view[start:start + MAX_FRAME]
        parts += (frame_header(len(piece)), piece)
    return b"".join(parts)


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
        client_transport: asyncio.BaseTransport | None,
        *,
        idle_timeout_s: float,
        max_session_s: float,
    ) -> None:
        self._ws = ws
        self._client = client_transport if isinstance(
            client_transport, asyncio.WriteTransport) else None
        self._idle_timeout_s = idle_timeout_s
        self._max_session_s = max_session_s
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._ended = asyncio.Event()
        self._vnc: asyncio.Transport | None = None
        self._handshake_writer: asyncio.StreamWriter | None = None
        # Cleared while the VNC transport is above its high-water mark (set by the protocol).
        self.vnc_writable = asyncio.Event()
        self.vnc_writable.set()
        self.vnc_closed = asyncio.Event()
        self._backlog: deque[bytes] = deque()
        self._backlog_ready = asyncio.Event()
        self.result = PipeResult()

    async def connect(self, host: str, port: int, timeout_s: float,
                      password: str | None = None) -> None:
        """Open the VNC connection (OSError/TimeoutError when it cannot be reached).

        With ``password`` the proxy logs in to the display and greets the browser itself
        (``vnc_handshake``; VncHandshakeFailed when either side fails), then pipes.
        """
        if self._client is not None:
            self._client.set_write_buffer_limits(high=HIGH_WATER)
            set_nodelay(self._client)
        if password is None:
            await asyncio.wait_for(
                self._loop.create_connection(lambda: _VncProtocol(self), host, port), timeout_s
            )
            return
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        try:
            await asyncio.wait_for(authenticate(reader, writer, password), timeout_s)
            early = await asyncio.wait_for(greet_client(self._ws), timeout_s)
        except BaseException:
            writer.close()
            raise
        # The stream is done with: its transport now feeds the pipe's protocol. The writer is
        # kept for the session: a StreamWriter closes its transport when it is collected.
        self._handshake_writer = writer
        transport = writer.transport
        protocol = _VncProtocol(self)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if early:
            self.result.bytes_to_vnc += len(early)
            transport.write(early)

    def vnc_connected(self, transport: asyncio.Transport) -> None:
        """The VNC connection is up (QEMU greets at once: this precedes any data)."""
        set_nodelay(transport)
        transport.set_write_buffer_limits(high=HIGH_WATER)
        self._vnc = transport

    def end(self, code: int, reason: str) -> None:
        """End the session with ``code``/``reason``; only the first call counts."""
        if self._ended.is_set():
            return
        self.result.close_code = code
        self.result.reason = reason
        self._ended.set()

    def buffered(self) -> tuple[int, int]:
        """Bytes waiting in this process: (to VNC, to the client)."""
        to_vnc = self._vnc.get_write_buffer_size() if self._vnc else 0
        to_client = sum(len(chunk) for chunk in self._backlog)
        if self._client is not None:
            to_client += self._client.get_write_buffer_size()
        return to_vnc, to_client

    def sockets(self) -> list[socket.socket]:
        """The VNC and client sockets (to check their options)."""
        found = [t.get_extra_info("socket") for t in (self._vnc, self._client) if t]
        return [s for s in found if s is not None]

    async def run(self) -> PipeResult:
        """Pipe until one side closes, a limit is reached or :meth:`end` is called."""
        assert self._vnc is not None, "connect() first"
        tasks = [
            asyncio.create_task(self._client_to_vnc(), name="console-client-to-vnc"),
            asyncio.create_task(self._send_backlog(), name="console-backlog-to-client"),
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

    # VNC -> client -------------------------------------------------------------------------

    def from_vnc(self, data: bytes) -> None:
        """A chunk read from VNC (called by the protocol, inside the event loop)."""
        self.result.bytes_to_client += len(data)
        self._last_activity = self._loop.time()
        client = self._client
        if (
            not self._backlog and client is not None and not self._ws.closed
            and not client.is_closing()
            and client.get_write_buffer_size() < HIGH_WATER
        ):
            client.write(binary_frames(data))
            return
        # The client is behind: stop reading VNC until the backlog is sent and drained.
        self._backlog.append(data)
        if self._vnc is not None:
            self._vnc.pause_reading()
        self._backlog_ready.set()

    async def _send_backlog(self) -> None:
        while True:
            await self._backlog_ready.wait()
            self._backlog_ready.clear()
            while self._backlog:
                try:
                    # aiohttp waits here until the client's transport drained (writer_limit 0).
                    await self._ws.send_bytes(self._backlog.popleft())
                except (ConnectionError, RuntimeError):
                    self.end(CLOSE_ABNORMAL, "client connection lost")
                    return
            if self._vnc is not None and not self._vnc.is_closing():
                self._vnc.resume_reading()

    # client -> VNC -------------------------------------------------------------------------

    async def _client_to_vnc(self) -> None:
        ws = self._ws
        vnc = self._vnc
        assert vnc is not None
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.BINARY:
                data: bytes = msg.data
                if vnc.is_closing():
                    self.end(CLOSE_INTERNAL, "VNC connection lost")
                    return
                vnc.write(data)
                self.result.bytes_to_vnc += len(data)
                self._last_activity = self._loop.time()
                if not self.vnc_writable.is_set():
                    await self.vnc_writable.wait()
            elif msg.type is WSMsgType.TEXT:
                # RFB is binary; the old base64 text protocol of websockify is not spoken here.
                self.end(CLOSE_UNSUPPORTED, "binary frames only")
                return
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                self.end(ws.close_code or CLOSE_NORMAL, "client closed the connection")
                return
            elif msg.type is WSMsgType.ERROR:
                # A protocol error (e.g. 1009 message too big) keeps its code; aiohttp already
                # sent the close frame. A lost connection has none (1006, recorded only).
                error = ws.exception()
                error_code = getattr(error, "code", None)
                self.end(error_code if isinstance(error_code, int) else CLOSE_ABNORMAL,
                         f"client connection failed: {error}")
                return

    # limits and closing --------------------------------------------------------------------

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
        if self._vnc is not None:
            self._vnc.close()  # flushes what is buffered; a VNC server that never reads...
            try:
                await asyncio.wait_for(self.vnc_closed.wait(), CLOSE_TIMEOUT_S)
            except TimeoutError:
                self._vnc.abort()  # ...must not keep the socket open forever
        if self._ws.closed:
            return
        code = self.result.close_code
        if code == CLOSE_ABNORMAL:  # 1006 must never be sent on the wire
            code = CLOSE_INTERNAL
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self._ws.close(code=code, message=clip_reason(self.result.reason).encode()),
                CLOSE_TIMEOUT_S,
            )


class _VncProtocol(asyncio.Protocol):
    """The VNC socket's events, forwarded to the pipe."""

    def __init__(self, pipe: ConsolePipe) -> None:
        self._pipe = pipe

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._pipe.vnc_connected(transport)

    def data_received(self, data: bytes) -> None:
        self._pipe.from_vnc(data)

    def eof_received(self) -> bool | None:
        self._pipe.end(CLOSE_INTERNAL, "VNC server closed the connection")
        return None  # close the transport

    def pause_writing(self) -> None:
        self._pipe.vnc_writable.clear()

    def resume_writing(self) -> None:
        self._pipe.vnc_writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._pipe.vnc_writable.set()
        self._pipe.vnc_closed.set()
        if exc is None:
            self._pipe.end(CLOSE_INTERNAL, "VNC server closed the connection")
        else:
            self._pipe.end(CLOSE_INTERNAL, f"VNC connection failed: {exc}")
