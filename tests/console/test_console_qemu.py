"""Consoles of a real QEMU display through the gateway: RFB works, refusals and closures are the
documented ones, sessions are audited, independent and leave nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import aiohttp
import pytest

from limiquantix.common import subjects
from limiquantix.common.events import (
    ConsoleSessionEnded,
    ConsoleSessionStarted,
    VmDeleted,
)
from limiquantix.common.vms import VmState
from tests.support import rfb
from tests.support.console import (
    Gateway,
    MakeGateway,
    QemuDisplay,
    console_events,
    qemu_display,
    wait_for,
)

pytestmark = pytest.mark.e2e


async def open_console(
    http: aiohttp.ClientSession, gateway: Gateway, vm: str, **kwargs: Any
) -> aiohttp.ClientWebSocketResponse:
    ticket = await gateway.ticket(http, vm)
    ws: aiohttp.ClientWebSocketResponse = await http.ws_connect(gateway.ws_url(ticket), **kwargs)
    return ws


async def test_rfb_client_gets_framebuffer_update_through_proxy(
    gateway: Gateway, http: aiohttp.ClientSession, qemu: QemuDisplay
) -> None:
    vm = await gateway.add_vm((qemu.host, qemu.port))
    async with await open_console(http, gateway, vm.id, protocols=("binary",)) as ws:
        assert ws.protocol == "binary"
        stream = rfb.WsStream(ws)
        init = await rfb.handshake(stream)
        assert (init.width, init.height) > (0, 0)
        assert init.bits_per_pixel in (8, 16, 32)
        pixels = await rfb.framebuffer_update(stream, init)
        # Whole rectangles of pixels (SeaBIOS may switch modes while a fresh VM boots, so the
        # update may describe a size other than ServerInit's).
        assert len(pixels) > 0 and len(pixels) % (init.bits_per_pixel // 8) == 0


async def test_console_works_without_subprotocol_and_by_vm_name(
    gateway: Gateway, http: aiohttp.ClientSession, qemu: QemuDisplay
) -> None:
    vm = await gateway.add_vm((qemu.host, qemu.port))
    async with await open_console(http, gateway, vm.name) as ws:
        assert ws.protocol is None  # nothing offered, nothing answered
        init = await rfb.handshake(rfb.WsStream(ws))
        assert init.width > 0


async def test_ticket_answer_has_token_ws_url_and_expiry(
    gateway: Gateway, http: aiohttp.ClientSession, qemu: QemuDisplay
) -> None:
    vm = await gateway.add_vm((qemu.host, qemu.port))
    ticket = await gateway.ticket(http, vm.id)
    assert ticket["url"] == f"/v1/console/ws?token={ticket['token']}"
    assert ticket["vm_id"] == vm.id and ticket["expires_at"]
    kv = await gateway.js.key_value(subjects.CONSOLE_TOKENS_BUCKET)
    keys = await kv.keys()
    assert ticket["token"] not in keys  # only the hash is stored
    for key in keys:
        assert ticket["token"].encode() not in ((await kv.get(key)).value or b"")


async def test_ticket_needs_bearer_token(
    gateway: Gateway, http: aiohttp.ClientSession, qemu: QemuDisplay
) -> None:
    vm = await gateway.add_vm((qemu.host, qemu.port))
    async with http.post(f"{gateway.url}v1/vms/{vm.id}/console") as response:
        assert response.status == 401


async def upgrade_problem(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """Send a WebSocket upgrade by hand and read the problem the gateway answers with."""
    upgrade = {
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", **(headers or {}),
    }
    async with http.get(url, headers=upgrade) as response:
        return response.status, await response.json(content_type=None)


async def test_reused_token_is_refused(
    gateway: Gateway, http: aiohttp.ClientSession, qemu: QemuDisplay
) -> None:
    vm = await gateway.add_vm((qemu.host, qemu.port))
    ticket = await gateway.ticket(http, vm.id)
    async with http.ws_connect(gateway.ws_url(ticket)) as ws:
        await rfb.handshake(rfb.WsStream(ws))
        status, problem = await upgrade_problem(http, gateway.ws_url(ticket))
    assert status == 403 and problem["code"] == "console_ticket_invalid"
    assert problem["hint"]


async def test_racing_uses_of_one_token_only_one_wins(
    gateway: Gateway, http: aiohttp.ClientSession, qemu: QemuDisplay
) -> None:
    vm = await gateway.add_vm((qemu.host, qemu.port))
    ticket = await gateway.ticket(http, vm.id)
    url = gateway.ws_url(ticket)
    results = await asyncio.gather(
        *(http.ws_connect(url) for _ in range(5)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, aiohttp.ClientWebSocketResponse)]
    losers = [r for r in results if isinstance(r, aiohttp.WSServerHandshakeError)]
    assert len(winners) == 1 and len(losers) == 4
    assert all(loser.status == 403 for loser in losers)
    await winners[0].close()


async def test_expired_token_is_refused(
    make_gateway: MakeGateway, http: aiohttp.ClientSession, qemu: QemuDisplay
) -> None:
    gateway = await make_gateway(console_allow_no_origin=True, console_ticket_ttl_s=0.3)
    vm = await gateway.add_vm((qemu.host, qemu.port))
    ticket = await gateway.ticket(http, vm.id)
    await asyncio.sleep(0.5)  # deliberate: time passes, the ticket's TTL runs out
    status, problem = await upgrade_problem(http, gateway.ws_url(ticket))
    assert status == 403 and problem["code"] == "console_ticket_expired"


async def test_unknown_token_is_refused(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    status, problem = await upgrade_problem(http, f"{gateway.url}v1/console/ws?token=nope")
    assert status == 403 and problem["code"] == "console_ticket_invalid"
    status, problem = await upgrade_problem(http, f"{gateway.url}v1/console/ws")
    assert status == 403 and problem["code"] == "console_ticket_invalid"


async def test_wrong_origin_is_refused_and_does_not_burn_the_ticket(
    make_gateway: MakeGateway, http: aiohttp.ClientSession, qemu: QemuDisplay
) -> None:
    gateway = await make_gateway(console_origins="https://console.example.org")
    vm = await gateway.add_vm((qemu.host, qemu.port))
    ticket = await gateway.ticket(http, vm.id)
    url = gateway.ws_url(ticket)
    status, problem = await upgrade_problem(http, url, {"Origin": "https://evil.example"})
    assert status == 403 and problem["code"] == "console_origin_rejected"
    status, problem = await upgrade_problem(http, url)  # no Origin, not allowed here
    assert status == 403 and problem["code"] == "console_origin_rejected"
    # The gateway's own origin passes, and the ticket is still good.
    async with http.ws_connect(url, origin=gateway.origin) as ws:
        await rfb.handshake(rfb.WsStream(ws))
    ticket = await gateway.ticket(http, vm.id)
    async with http.ws_connect(gateway.ws_url(ticket), origin="https://console.example.org") as ws:
        await rfb.handshake(rfb.WsStream(ws))


async def test_plain_get_of_ws_path_does_not_consume_ticket(
    gateway: Gateway, http: aiohttp.ClientSession, qemu: QemuDisplay
) -> None:
    vm = await gateway.add_vm((qemu.host, qemu.port))
    ticket = await gateway.ticket(http, vm.id)
    async with http.get(gateway.ws_url(ticket)) as response:
        assert response.status == 400
    async with http.ws_connect(gateway.ws_url(ticket)) as ws:
        await rfb.handshake(rfb.WsStream(ws))


async def test_unknown_vm_and_vm_without_display_are_refused(
    gateway: Gateway, http: aiohttp.ClientSession, qemu: QemuDisplay
) -> None:
    for ref in ("no-such-vm", "a.b", "x%20y"):
        async with http.post(f"{gateway.url}v1/vms/{ref}/console", headers=gateway.auth) as r:
            assert r.status == 404 and (await r.json())["code"] == "vm_not_found"
    stopped = await gateway.add_vm(None, state=VmState.STOPPED)
    async with http.post(f"{gateway.url}v1/vms/{stopped.id}/console", headers=gateway.auth) as r:
        assert r.status == 409 and (await r.json())["code"] == "console_unavailable"
    no_vnc = await gateway.add_vm(None)
    async with http.post(f"{gateway.url}v1/vms/{no_vnc.id}/console", headers=gateway.auth) as r:
        assert r.status == 409 and (await r.json())["code"] == "console_unavailable"
    # A ticket whose VM was deleted before the WebSocket opened.
    vm = await gateway.add_vm((qemu.host, qemu.port))
    ticket = await gateway.ticket(http, vm.id)
    await gateway.store.delete(vm)
    status, problem = await upgrade_problem(http, gateway.ws_url(ticket))
    assert status == 404 and problem["code"] == "vm_not_found"


async def test_vm_stopped_event_closes_session_1011(
    gateway: Gateway, http: aiohttp.ClientSession, qemu: QemuDisplay
) -> None:
    vm = await gateway.add_vm((qemu.host, qemu.port))
    async with await open_console(http, gateway, vm.id) as ws:
        await rfb.handshake(rfb.WsStream(ws))
        await gateway.stop_vm(vm)
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == 1011 and msg.extra == "VM stopped"


async def test_vm_deleted_event_closes_session_1011(
    gateway: Gateway, http: aiohttp.ClientSession, qemu: QemuDisplay
) -> None:
    vm = await gateway.add_vm((qemu.host, qemu.port))
    async with await open_console(http, gateway, vm.id) as ws:
        await rfb.handshake(rfb.WsStream(ws))
        await gateway.publish(VmDeleted(vm_id=vm.id, name=vm.name, node=vm.node))
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.data == 1011 and msg.extra == "VM deleted"


async def test_domain_destroyed_mid_session_closes_1011(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    """QEMU itself goes away under an open console (before any event could say so)."""
    with qemu_display() as display:
        vm = await gateway.add_vm((display.host, display.port))
        async with await open_console(http, gateway, vm.id) as ws:
            stream = rfb.WsStream(ws)
            await rfb.handshake(stream)
            await asyncio.to_thread(display.destroy)
            with pytest.raises(rfb.ClosedError) as closed:
                await asyncio.wait_for(stream.read(1), 15)
    assert closed.value.code == 1011
    assert closed.value.reason == "VNC server closed the connection"


async def test_every_session_is_audited_with_bytes_and_close(
    gateway: Gateway, http: aiohttp.ClientSession, qemu: QemuDisplay
) -> None:
    vm = await gateway.add_vm((qemu.host, qemu.port))
    async with await open_console(http, gateway, vm.id) as ws:
        stream = rfb.WsStream(ws)
        init = await rfb.handshake(stream)
        pixels = await rfb.framebuffer_update(stream, init)
    await wait_for(lambda: gateway.open_sessions == 0)
    events = await console_events(gateway, vm.id)
    assert [type(e) for e in events] == [ConsoleSessionStarted, ConsoleSessionEnded]
    started, ended = events
    assert isinstance(started, ConsoleSessionStarted) and isinstance(ended, ConsoleSessionEnded)
    assert started.session_id == ended.session_id and started.vm_id == vm.id
    assert started.user == "master" and ended.user == started.user  # the token's name
    assert started.remote == "127.0.0.1"
    assert ended.started_at == started.time and ended.time >= ended.started_at
    assert ended.bytes_to_client >= len(pixels) + 12  # the screen plus the RFB greeting
    assert ended.bytes_to_vnc >= 12 + 1 + 1 + 10  # version, security, ClientInit, FBU request
    assert ended.close_code == 1000 and ended.reason == "client closed the connection"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_many_short_sessions_leak_no_fds_or_tasks(
    gateway: Gateway, http: aiohttp.ClientSession, qemu: QemuDisplay
) -> None:
    vm = await gateway.add_vm((qemu.host, qemu.port))

    async def one_session() -> None:
        async with await open_console(http, gateway, vm.id) as ws:
            await rfb.handshake(rfb.WsStream(ws))

    await one_session()  # warm-up: connection pools, lazily created objects
    await wait_for(lambda: gateway.open_sessions == 0)
    await asyncio.sleep(0.2)  # settle: the warm-up's closing handshakes end before the baseline
    fds_before, tasks_before = open_fds(), len(asyncio.all_tasks())
    for _ in range(40):
        await one_session()
    await wait_for(lambda: gateway.open_sessions == 0)
    # Closing handshakes finish in the background: wait for the counts to come back down.
    with contextlib.suppress(TimeoutError):
        await wait_for(lambda: open_fds() <= fds_before + 2
                       and len(asyncio.all_tasks()) <= tasks_before, timeout_s=5)
    assert open_fds() <= fds_before + 2, (fds_before, open_fds())
    assert len(asyncio.all_tasks()) <= tasks_before, [t.get_name() for t in asyncio.all_tasks()]


async def test_two_viewers_and_two_vms_are_independent(
    gateway: Gateway, http: aiohttp.ClientSession, qemu: QemuDisplay
) -> None:
    vm_a = await gateway.add_vm((qemu.host, qemu.port))
    with qemu_display() as other:
        vm_b = await gateway.add_vm((other.host, other.port))
        viewers = [await open_console(http, gateway, vm) for vm in (vm_a.id, vm_a.id, vm_b.id)]
        streams = [rfb.WsStream(ws) for ws in viewers]
        inits = await asyncio.gather(*(rfb.handshake(s) for s in streams))
        await asyncio.gather(*(rfb.framebuffer_update(s, i) for s, i in zip(streams, inits,
                                                                         strict=True)))
        await viewers[0].close()  # the first viewer leaves; the second still works
        await rfb.framebuffer_update(streams[1], inits[1])
        await asyncio.to_thread(other.destroy)  # VM b's display dies; VM a's viewer is fine
        with pytest.raises(rfb.ClosedError) as closed:
            await asyncio.wait_for(streams[2].read(1), 15)
        assert closed.value.code == 1011
        await rfb.framebuffer_update(streams[1], inits[1])
        for ws in viewers:
            await ws.close()
