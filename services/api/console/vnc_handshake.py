"""The RFB handshake the console proxy does itself when a display has a password.

To QEMU the proxy is the VNC client: version 3.8, security type 2 (VNC authentication) answered
with the VM's display password (``libs/common/vnc_auth.py``). To the browser it is the server:
version 3.8 and security type 1 (None), since the WebSocket itself was authorised by a
single-use ticket. After both, the byte pipe takes over: the browser's ClientInit goes to QEMU,
QEMU's ServerInit to the browser. The password never leaves the gateway.
"""

from __future__ import annotations

import asyncio
import struct

from aiohttp import WSMsgType, web

from limiquantix.common.vnc_auth import vnc_auth_response

RFB_38 = b"RFB 003.008\n"
SECURITY_NONE = 1
SECURITY_VNC = 2
_U32 = struct.Struct("!I")


class VncHandshakeFailed(Exception):
    """The display or the browser did not complete the handshake (the reason says which)."""


async def _reason(reader: asyncio.StreamReader) -> str:
    (length,) = _U32.unpack(await reader.readexactly(4))
    return (await reader.readexactly(min(length, 1024))).decode(errors="replace")


async def authenticate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       password: str) -> None:
    """Log in to the display as a VNC 3.8 client (raises VncHandshakeFailed)."""
    version = await reader.readexactly(12)
    if not version.startswith(b"RFB 003."):
        raise VncHandshakeFailed(f"the display is not an RFB server ({version[:12]!r})")
    writer.write(RFB_38)
    (count,) = await reader.readexactly(1)
    if count == 0:
        raise VncHandshakeFailed(f"the display refused the connection: {await _reason(reader)}")
    offered = await reader.readexactly(count)
    if SECURITY_VNC in offered:
        writer.write(bytes([SECURITY_VNC]))
        challenge = await reader.readexactly(16)
        writer.write(vnc_auth_response(password, challenge))
    elif SECURITY_NONE in offered:
        writer.write(bytes([SECURITY_NONE]))
    else:
        raise VncHandshakeFailed(f"the display offers no security type we speak: {list(offered)}")
    (result,) = _U32.unpack(await reader.readexactly(4))
    if result != 0:
        raise VncHandshakeFailed(f"the display refused our login: {await _reason(reader)}")


class _WsReader:
    """Exact byte counts out of a WebSocket's binary messages."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws
        self.buffer = bytearray()

    async def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            msg = await self._ws.receive()
            if msg.type != WSMsgType.BINARY:
                raise VncHandshakeFailed("the browser left during the RFB handshake")
            self.buffer += msg.data
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data


async def greet_client(ws: web.WebSocketResponse) -> bytes:
    """Be the RFB 3.8 server with no authentication; the bytes the browser sent past its
    security choice (its ClientInit, if it came in the same message) are returned."""
    reader = _WsReader(ws)
    await ws.send_bytes(RFB_38)
    version = await reader.read(12)
    if not version.startswith(b"RFB 003."):
        raise VncHandshakeFailed(f"the browser is not an RFB client ({version!r})")
    minor = int(version[8:11]) if version[8:11].isdigit() else 8
    if minor >= 7:
        await ws.send_bytes(bytes([1, SECURITY_NONE]))
        if (await reader.read(1))[0] != SECURITY_NONE:
            raise VncHandshakeFailed("the browser chose a security type we did not offer")
    else:  # 3.3: the server decides the security type, as a u32
        await ws.send_bytes(_U32.pack(SECURITY_NONE))
    if minor >= 8:
        await ws.send_bytes(_U32.pack(0))  # SecurityResult: OK
    return bytes(reader.buffer)
