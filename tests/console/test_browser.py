"""The console page in headless Chromium (Debian's package, no browser download): noVNC, loaded
as static ES modules from the gateway, connects through the proxy to a real QEMU display and
draws SeaBIOS's screen."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.support.browser import CANVAS_STATS, CONNECT_TIMEOUT_MS
from tests.support.console import TOKEN, MakeGateway, QemuDisplay

pytestmark = [pytest.mark.browser, pytest.mark.e2e]




async def test_console_page_shows_the_vm_screen(
    make_gateway: MakeGateway, qemu: QemuDisplay, page: Page, tmp_path: Path
) -> None:
    # Browser rules only: the page's own Origin, no exception for Origin-less clients.
    gateway = await make_gateway()
    vm = await gateway.add_vm((qemu.host, qemu.port))
    await page.goto(f"{gateway.url}v1/vms/{vm.id}/console#token={TOKEN}")
    await expect(page.locator("body")).to_have_attribute(
        "data-state", "connected", timeout=CONNECT_TIMEOUT_MS
    )
    assert "#token" not in page.url  # the API token left the address bar at once
    # SeaBIOS's text screen: wait until something is drawn, then look at it.
    await page.wait_for_function(
        f"() => ({CANVAS_STATS})().lit > 100", timeout=CONNECT_TIMEOUT_MS
    )
    stats = await page.evaluate(CANVAS_STATS)
    await page.locator("#screen canvas").screenshot(path=str(tmp_path / "console.png"))
    assert (tmp_path / "console.png").stat().st_size > 1000
    assert stats["width"] >= 640 and stats["height"] >= 400
    assert stats["variance"] > 10, stats  # not one flat colour
    assert gateway.open_sessions == 1
    await page.close()


async def test_console_page_asks_for_a_token_when_it_has_none(
    make_gateway: MakeGateway, qemu: QemuDisplay, page: Page
) -> None:
    gateway = await make_gateway()
    vm = await gateway.add_vm((qemu.host, qemu.port))
    await page.goto(f"{gateway.url}v1/vms/{vm.id}/console")
    await expect(page.locator("#token-form")).to_be_visible()
    await page.fill("#token", TOKEN)
    await page.click("#token-form button[type=submit]")
    await expect(page.locator("body")).to_have_attribute(
        "data-state", "connected", timeout=CONNECT_TIMEOUT_MS
    )


async def test_console_page_reports_a_stopped_vm(
    make_gateway: MakeGateway, qemu: QemuDisplay, page: Page
) -> None:
    gateway = await make_gateway()
    vm = await gateway.add_vm((qemu.host, qemu.port))
    await page.goto(f"{gateway.url}v1/vms/{vm.id}/console#token={TOKEN}")
    await expect(page.locator("body")).to_have_attribute(
        "data-state", "connected", timeout=CONNECT_TIMEOUT_MS
    )
    await gateway.stop_vm(vm)
    await expect(page.locator("body")).to_have_attribute("data-state", "disconnected")
    await page.click("#reconnect")  # a new ticket is asked for: the VM has no console now
    await expect(page.locator("body")).to_have_attribute("data-state", "error")
    await expect(page.locator("#status")).to_contain_text("console_unavailable")
