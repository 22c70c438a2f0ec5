"""Consoles on the whole system: a VM created through the API on qemu:///system (TCG, a blank
disk: SeaBIOS draws its screen), its console through the gateway subprocess, stopped through the
API mid-session; the same page in headless Chromium."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from nats.js.api import DeliverPolicy
from playwright.async_api import Page, expect

from limiquantix.common import subjects
from limiquantix.common.events import (
    ConsoleSessionEnded,
    ConsoleSessionStarted,
    Event,
    event_decoder,
)
from limiquantix.local.stack import Stack
from tests.support import rfb
from tests.support.browser import CANVAS_STATS, CONNECT_TIMEOUT_MS
from tests.support.disks import make_qcow2
from tests.support.flows import FAST_ENV, action, create_vm, unique_name, wait_state

pytestmark = [pytest.mark.e2e, pytest.mark.stack]


@pytest.fixture
async def running_vm(qemu_tmp: Path) -> AsyncIterator[tuple[Stack, aiohttp.ClientSession, str]]:
    """The whole system on qemu:///system and one running VM (deleted at the end)."""
    image = make_qcow2(qemu_tmp / "blank.qcow2", "64M")
    async with Stack(qemu_tmp / "s", libvirt_uri="qemu:///system", extra_env=FAST_ENV) as stack, \
            aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as api:
        vm = await create_vm(api, name=unique_name("con"), image=str(image), memory_mib=128,
                             disk_gib=1)
        await wait_state(api, vm["id"], "running", timeout_s=90)
        try:
            yield stack, api, vm["id"]
        finally:
            async with api.delete(f"/v1/vms/{vm['id']}") as response:
                assert response.status in (202, 404)
            await _wait_gone(api, vm["id"])


async def _wait_gone(api: aiohttp.ClientSession, vm_id: str) -> None:
    for _ in range(600):
        async with api.get(f"/v1/vms/{vm_id}") as response:
            if response.status == 404:
                return
        await asyncio.sleep(0.1)


async def ticket(api: aiohttp.ClientSession, vm_id: str) -> dict[str, Any]:
    async with api.post(f"/v1/vms/{vm_id}/console") as response:
        body: dict[str, Any] = await response.json()
        assert response.status == 201, body
        return body


async def test_console_of_api_created_vm_until_it_is_stopped(
    running_vm: tuple[Stack, aiohttp.ClientSession, str],
) -> None:
    stack, api, vm_id = running_vm
    async with aiohttp.ClientSession() as http:
        viewers = []
        for _ in range(2):  # two viewers of one VM
            url = stack.api_url + (await ticket(api, vm_id))["url"]
            viewers.append(await http.ws_connect(url, origin=stack.api_url))
        streams = [rfb.WsStream(ws) for ws in viewers]
        for stream in streams:
            init = await rfb.handshake(stream)
            assert len(await rfb.framebuffer_update(stream, init)) > 0

        status, _ = await action(api, vm_id, "force-stop")
        assert status == 202
        for ws in viewers:
            msg = await asyncio.wait_for(ws.receive(), 30)
            assert msg.type is aiohttp.WSMsgType.CLOSE, msg
            assert msg.data == 1011
            assert msg.extra in ("VM stopped", "VNC server closed the connection")
        await wait_state(api, vm_id, "stopped", timeout_s=30)
        async with api.post(f"/v1/vms/{vm_id}/console") as response:
            assert response.status == 409
            assert (await response.json())["code"] == "console_unavailable"

    nc = await nats.connect(**stack.nats_options())  # as the gateway
    try:
        sub = await nc.jetstream().subscribe(subjects.console_events(vm_id), ordered_consumer=True,
                                             deliver_policy=DeliverPolicy.ALL)
        events: list[Event] = []
        while len(events) < 4:
            events.append(event_decoder.decode((await sub.next_msg(timeout=10)).data))
        await sub.unsubscribe()
    finally:
        await nc.close()
    assert sorted(type(e).__name__ for e in events) == sorted(
        [ConsoleSessionStarted.__name__] * 2 + [ConsoleSessionEnded.__name__] * 2)
    ended = [e for e in events if isinstance(e, ConsoleSessionEnded)]
    assert all(e.close_code == 1011 and e.bytes_to_client > 0 for e in ended)


@pytest.mark.browser
async def test_console_page_of_api_created_vm_in_chromium(
    running_vm: tuple[Stack, aiohttp.ClientSession, str], page: Page,
) -> None:
    stack, _, vm_id = running_vm
    await page.goto(f"{stack.api_url}/v1/vms/{vm_id}/console#token={stack.api_token}")
    await expect(page.locator("body")).to_have_attribute(
        "data-state", "connected", timeout=CONNECT_TIMEOUT_MS
    )
    await page.wait_for_function(
        f"() => ({CANVAS_STATS})().lit > 100", timeout=CONNECT_TIMEOUT_MS
    )
    stats = await page.evaluate(CANVAS_STATS)
    assert stats["variance"] > 10, stats


async def test_the_display_asks_a_password_only_the_gateway_knows(
    running_vm: tuple[Stack, aiohttp.ClientSession, str],
) -> None:
    """Anyone who reaches the node's VNC port is asked for VNC authentication (and a wrong
    answer is refused); the console through the gateway logs in by itself."""
    stack, api, vm_id = running_vm
    async with api.get(f"/v1/vms/{vm_id}") as response:
        vnc = (await response.json())["vnc"]
    assert vnc["password_protected"] is True
    reader, writer = await asyncio.open_connection(vnc["host"], vnc["port"])
    try:
        assert await reader.readexactly(12) == b"RFB 003.008\n"
        writer.write(b"RFB 003.008\n")
        (count,) = await reader.readexactly(1)
        assert list(await reader.readexactly(count)) == [2]  # VNC authentication, nothing else
        writer.write(bytes([2]))
        await reader.readexactly(16)  # the challenge
        writer.write(bytes(16))  # a guess
        assert await reader.readexactly(4) != bytes(4)  # SecurityResult: failed
    finally:
        writer.close()
    async with aiohttp.ClientSession() as http:
        url = stack.api_url + (await ticket(api, vm_id))["url"]
        async with http.ws_connect(url, origin=stack.api_url) as ws:
            stream = rfb.WsStream(ws)
            init = await rfb.handshake(stream)
            assert len(await rfb.framebuffer_update(stream, init)) > 0
