"""A minimal RFB 3.8 client over a WebSocket (aiohttp client): just enough to prove a console.

It speaks the protocol itself (no VNC library), so a passing test means real RFB bytes crossed the
proxy both ways: version, security type None, ClientInit/ServerInit, a FramebufferUpdateRequest
and the FramebufferUpdate that answers it (raw encoding: the default without SetEncodings).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import aiohttp

RFB_VERSION = b"RFB 003.008\n"
SECURITY_NONE = 1
RAW_ENCODING = 0


class ClosedError(Exception):
    """The WebSocket closed while a read waited; carries the close code and reason."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code = code
        self.reason = reason


class WsStream:
    """Exact-length reads over a WebSocket's binary messages."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._buffer = bytearray()

    async def read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            msg = await self.ws.receive()
            if msg.type is aiohttp.WSMsgType.BINARY:
                self._buffer += msg.data
            elif msg.type is aiohttp.WSMsgType.CLOSE:
                # The code the server sent (ws.close_code may turn 1006 if the reply fails).
                raise ClosedError(msg.data, msg.extra or "")
            elif msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                raise ClosedError(self.ws.close_code, msg.extra or "")
            else:
                raise AssertionError(f"unexpected WebSocket message {msg.type}")
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def write(self, data: bytes) -> None:
        await self.ws.send_bytes(data)


@dataclass
class ServerInit:
    width: int
    height: int
    bits_per_pixel: int
    name: str


async def handshake(stream: WsStream) -> ServerInit:
    """RFB 3.8 up to ServerInit, with security type None and a shared session."""
    version = await stream.read(12)
    assert version == RFB_VERSION, version
    await stream.write(RFB_VERSION)
    (count,) = await stream.read(1)
    assert count > 0, "server refused the connection"
    types = await stream.read(count)
    assert SECURITY_NONE in types, f"no security type None in {list(types)}"
    await stream.write(bytes([SECURITY_NONE]))
    (result,) = struct.unpack(">I", await stream.read(4))
    assert result == 0, f"security result {result}"
    await stream.write(b"\x01")  # ClientInit: shared, other viewers stay connected
    width, height = struct.unpack(">HH", await stream.read(4))
    pixel_format = await stream.read(16)
    (name_length,) = struct.unpack(">I", await stream.read(4))
    name = (await stream.read(name_length)).decode(errors="replace")
    return ServerInit(width=width, height=height, bits_per_pixel=pixel_format[0], name=name)


async def framebuffer_update(stream: WsStream, init: ServerInit) -> bytes:
    """Ask for the whole screen (non-incremental) and return its raw pixels."""
    await stream.write(struct.pack(">BBHHHH", 3, 0, 0, 0, init.width, init.height))
    while True:
        (message_type,) = await stream.read(1)
        if message_type == 0:
            break
        if message_type == 2:  # Bell
            continue
        raise AssertionError(f"unexpected server message type {message_type}")
    _, rect_count = struct.unpack(">BH", await stream.read(3))
    pixels = bytearray()
    bytes_per_pixel = init.bits_per_pixel // 8
    for _ in range(rect_count):
        _x, _y, w, h, encoding = struct.unpack(">HHHHi", await stream.read(12))
        assert encoding == RAW_ENCODING, f"encoding {encoding} not asked for"
        pixels += await stream.read(w * h * bytes_per_pixel)
    return bytes(pixels)
