"""Console sessions and their bytes show in the gateway's /metrics (a real QEMU display)."""

from __future__ import annotations

import aiohttp
import pytest

from tests.metrics.scrape import sample_sum
from tests.support import rfb
from tests.support.console import Gateway, QemuDisplay, wait_for

pytestmark = pytest.mark.e2e


async def scrape(http: aiohttp.ClientSession, gateway: Gateway) -> str:
    async with http.get(gateway.url + "metrics", headers=gateway.auth) as response:
        assert response.status == 200
        return await response.text()


async def test_a_console_session_is_counted_with_its_bytes(
        gateway: Gateway, http: aiohttp.ClientSession, qemu: QemuDisplay) -> None:
    before = await scrape(http, gateway)
    vm = await gateway.add_vm((qemu.host, qemu.port))
    ticket = await gateway.ticket(http, vm.id)
    async with http.ws_connect(gateway.ws_url(ticket)) as ws:
        stream = rfb.WsStream(ws)
        init = await rfb.handshake(stream)
        pixels = await rfb.framebuffer_update(stream, init)
        during = await scrape(http, gateway)
        assert sample_sum(during, "lq_console_sessions_open") == 1
    await wait_for(lambda: gateway.open_sessions == 0)
    after = await scrape(http, gateway)

    def moved(name: str, **labels: str) -> float:
        return sample_sum(after, name, **labels) - sample_sum(before, name, **labels)

    assert moved("lq_console_sessions_total") == 1
    assert sample_sum(after, "lq_console_sessions_open") == 0
    assert moved("lq_console_bytes_total", direction="to_client") >= len(pixels)
    assert moved("lq_console_bytes_total", direction="to_vnc") > 0
    assert moved("lq_http_requests_total", method="POST", route="/v1/vms/{vm}/console",
                 status="201") == 1
