"""The WebSocket<->TCP pipe: backpressure both ways, limits, failures, socket options, shutdown.

The "VNC server" here is a real TCP server on 127.0.0.1 (echo, sink or flood) because these
tests are about the pipe; RFB against real QEMU is in test_console_qemu.py.
"""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest

from limiquantix.api.console.gateway import MAX_CLIENT_FRAME
from limiquantix.api.console.proxy import HIGH_WATER, MAX_FRAME, binary_frames
from limiquantix.api.console.routes import GATEWAY
from limiquantix.common.nats_server import free_port
from tests.support.console import Gateway, MakeGateway, wait_for
from tests.support.tcp_servers import pattern, tcp_server

MiB = 1 << 20


async def connect(http: aiohttp.ClientSession, gateway: Gateway, port: int,
                  ) -> aiohttp.ClientWebSocketResponse:
    vm = await gateway.add_vm(("127.0.0.1", port))
    ticket = await gateway.ticket(http, vm.id)
    return await http.ws_connect(gateway.ws_url(ticket), max_msg_size=0)


def pipe_buffers(gateway: Gateway) -> tuple[int, int]:
    (pipe,) = gateway.server.app[GATEWAY].pipes
    return pipe.buffered()


async def test_slow_vnc_side_stops_reading_from_the_client(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    """A VNC server that does not read makes the client's sends block; the proxy stays small."""
    async with tcp_server("sink") as sink:
        ws = await connect(http, gateway, sink.port)
        sent = 0
        chunk = 256 * 1024
        while sent < 512 * MiB:
            try:
                await asyncio.wait_for(ws.send_bytes(pattern(sent, chunk)), 1.0)
            except TimeoutError:
                break
            sent += chunk
        assert sent < 64 * MiB, f"{sent / MiB:.0f} MiB accepted while nobody reads"
        to_vnc, _ = pipe_buffers(gateway)
        assert to_vnc <= HIGH_WATER + MAX_CLIENT_FRAME  # the mark plus one message
        sink.release.set()  # the server reads now: everything arrives, in order
        await wait_for(lambda: len(sink.received) >= sent - chunk, 20)
        assert bytes(sink.received[:MiB]) == pattern(0, MiB)
        await ws.close()


async def test_slow_client_stops_reading_from_vnc(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    """A client that does not read makes the VNC server's writes block; the proxy stays small."""
    async with tcp_server("flood") as flood:
        ws = await connect(http, gateway, flood.port)
        await asyncio.sleep(2.0)  # deliberate: time passes while the client reads nothing
        written = flood.written
        assert written < 64 * MiB, f"{written / MiB:.0f} MiB written while nobody reads"
        _, to_client = pipe_buffers(gateway)
        assert to_client <= HIGH_WATER + 2 * 256 * 1024  # the mark plus a read or two
        received = bytearray()
        while len(received) < 4 * MiB:
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.BINARY
            received += msg.data
        assert bytes(received[: 4 * MiB]) == pattern(0, 4 * MiB)
        await ws.close()


async def test_idle_session_is_closed(make_gateway: MakeGateway,
                                      http: aiohttp.ClientSession) -> None:
    gateway = await make_gateway(console_allow_no_origin=True, console_idle_timeout_s=0.6)
    async with tcp_server("echo") as echo:
        ws = await connect(http, gateway, echo.port)
        started = time.monotonic()
        for _ in range(6):  # traffic keeps it open past the timeout
            await ws.send_bytes(b"ping")
            assert (await ws.receive(timeout=2)).data == b"ping"
            await asyncio.sleep(0.25)  # paces the traffic across the idle timeout
        quiet_since = time.monotonic()
        msg = await ws.receive(timeout=3)
        quiet = time.monotonic() - quiet_since
    assert quiet_since - started > 2 * 0.6  # open well past the timeout while busy
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert msg.data == 1000 and msg.extra == "idle timeout"
    assert quiet < 0.6 + 0.5


async def test_session_ends_at_maximum_length_despite_traffic(
    make_gateway: MakeGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await make_gateway(console_allow_no_origin=True, console_max_session_s=1.0)
    async with tcp_server("echo") as echo:
        ws = await connect(http, gateway, echo.port)
        started = time.monotonic()
        while True:
            await ws.send_bytes(b"ping")
            msg = await ws.receive(timeout=3)
            if msg.type is not aiohttp.WSMsgType.BINARY:
                break
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
    assert msg.data == 1000 and msg.extra == "maximum session length reached"
    assert 0.9 < elapsed < 2.0


async def test_unreachable_vnc_closes_1011_with_reason(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    ws = await connect(http, gateway, free_port())  # nothing listens there
    msg = await ws.receive(timeout=10)
    assert msg.data == 1011
    assert str(msg.extra).startswith("cannot reach the VNC display at 127.0.0.1:")


async def test_text_frames_are_refused_1003(gateway: Gateway,
                                            http: aiohttp.ClientSession) -> None:
    async with tcp_server("echo") as echo:
        ws = await connect(http, gateway, echo.port)
        await ws.send_str("hello")
        msg = await ws.receive(timeout=5)
    assert msg.data == 1003 and msg.extra == "binary frames only"


async def test_both_sockets_have_tcp_nodelay(gateway: Gateway,
                                             http: aiohttp.ClientSession) -> None:
    async with tcp_server("echo") as echo:
        ws = await connect(http, gateway, echo.port)
        await ws.send_bytes(b"x")
        await ws.receive(timeout=5)
        (pipe,) = gateway.server.app[GATEWAY].pipes
        sockets = pipe.sockets()
        assert len(sockets) == 2
        for sock in sockets:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        await ws.close()


async def test_gateway_shutdown_closes_sessions_1001(
    make_gateway: MakeGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await make_gateway(console_allow_no_origin=True)
    async with tcp_server("echo") as echo:
        ws = await connect(http, gateway, echo.port)
        await ws.send_bytes(b"x")
        await ws.receive(timeout=5)
        closing = asyncio.create_task(gateway.server.close())
        msg = await ws.receive(timeout=10)
        await closing
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert msg.data == 1001 and msg.extra == "gateway shutting down"


async def test_oversized_client_frame_closes_1009(gateway: Gateway,
                                                 http: aiohttp.ClientSession) -> None:
    async with tcp_server("echo") as echo:
        ws = await connect(http, gateway, echo.port)
        await ws.send_bytes(bytes(MAX_CLIENT_FRAME + 1))
        msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1009


@pytest.mark.parametrize("size", [1, 4096, 512 * 1024])
async def test_bytes_cross_unchanged_both_ways(
    gateway: Gateway, http: aiohttp.ClientSession, size: int
) -> None:
    async with tcp_server("echo") as echo:
        ws = await connect(http, gateway, echo.port)
        payload = pattern(7, size)
        await ws.send_bytes(payload)
        back = bytearray()
        while len(back) < size:
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.BINARY, msg
            back += msg.data
        assert bytes(back) == payload
        await ws.close()


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_frames_written_directly_parse_back_to_the_data(size: int) -> None:
    """The fast path writes frames itself: RFC 6455 headers, FIN, binary, unmasked, <= 64 KiB."""
    data = pattern(3, size)
    wire, out, frames = binary_frames(data), bytearray(), 0
    while wire:
        assert wire[0] == 0x82 and wire[1] & 0x80 == 0
        n, head = wire[1] & 0x7F, 2
        if n == 126:
            n, head = int.from_bytes(wire[2:4], "big"), 4
        elif n == 127:
            n, head = int.from_bytes(wire[2:10], "big"), 10
        assert n <= MAX_FRAME
        out += wire[head:head + n]
        wire, frames = wire[head + n:], frames + 1
    assert bytes(out) == data
    assert frames == max(1, -(-size // MAX_FRAME))
