"""Consoles on real QEMU displays: the link ``lq vm console`` prints carries a single-use ticket,
never the API token, and opens the display once; the web UI's Console tab draws the screen too."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, expect

from limiquantix.cli.main import run as lq
from tests.console.conftest import make_gateway as make_gateway
from tests.console.conftest import qemu as qemu
from tests.support.browser import CANVAS_STATS, chromium, strict_page
from tests.support.console import TOKEN, Gateway, MakeGateway, QemuDisplay
from tests.support.web_build import SCREENSHOTS, ensure_built

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CONNECT_TIMEOUT_MS = 30_000


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with chromium(tmp_path / "chromium-profile",
                        viewport={"width": 1280, "height": 860}) as context:
        yield context


@pytest.fixture
async def page(browser: BrowserContext) -> AsyncIterator[Page]:
    async with strict_page(browser) as page:
        yield page


async def lq_console(gateway: Gateway, vm: str) -> tuple[int, str, str]:
    """``lq vm console VM`` against the gateway (in a thread: the CLI's HTTP client blocks)."""
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(
        lq, ["--url", gateway.origin, "--token", TOKEN, "vm", "console", vm], out, err)
    return code, out.getvalue(), err.getvalue()


async def canvas_drawn(page: Page, selector: str) -> dict[str, float]:
    stats_js = CANVAS_STATS.replace("#screen canvas", selector)
    await page.wait_for_function(f"() => ({stats_js})().lit > 100", timeout=CONNECT_TIMEOUT_MS)
    stats: dict[str, float] = await page.evaluate(stats_js)
    assert stats["variance"] > 10, stats  # not one flat colour
    return stats


async def test_the_cli_console_link_holds_a_single_use_ticket_never_the_api_token(
        make_gateway: MakeGateway, qemu: QemuDisplay, page: Page,
        browser: BrowserContext) -> None:
    gateway = await make_gateway()
    vm = await gateway.add_vm((qemu.host, qemu.port))
    code, out, err = await lq_console(gateway, vm.name)
    assert code == 0, err
    url = out.strip()
    assert url.startswith(f"{gateway.origin}/v1/vms/{vm.id}/console#ticket=")
    assert TOKEN not in url and TOKEN not in err
    assert "single-use" in err

    await page.goto(url)  # a fresh profile: no API token anywhere in this browser
    await expect(page.locator("body")).to_have_attribute("data-state", "connected",
                                                         timeout=CONNECT_TIMEOUT_MS)
    assert "#ticket" not in page.url  # the ticket left the address bar at once
    await canvas_drawn(page, "#screen canvas")
    assert await page.evaluate("localStorage.getItem('lq.token')") is None

    # The same link again: refused, with what to do.
    async with strict_page(browser) as again:
        await again.goto(url)
        await expect(again.locator("body")).to_have_attribute("data-state", "error",
                                                              timeout=CONNECT_TIMEOUT_MS)
        await expect(again.locator("#status")).to_contain_text("lq vm console")


async def test_the_web_ui_console_tab_shows_the_vm_screen(
        make_gateway: MakeGateway, qemu: QemuDisplay, page: Page) -> None:
    ensure_built()
    gateway = await make_gateway()
    vm = await gateway.add_vm((qemu.host, qemu.port), name="console-tab")
    await page.goto(gateway.url)
    await page.evaluate(f"localStorage.setItem('lq.token', '{TOKEN}')")
    await page.goto(f"{gateway.origin}/vms/console-tab/console")
    await expect(page.locator("#console-status")).to_have_attribute(
        "data-state", "connected", timeout=CONNECT_TIMEOUT_MS)
    stats = await canvas_drawn(page, "#console-screen canvas")
    assert stats["width"] >= 640
    await expect(page.get_by_role("button", name="Ctrl+Alt+Del")).to_be_enabled()
    await page.get_by_role("button", name="Ctrl+Alt+Del").focus()
    await page.keyboard.press("Enter")  # reachable by keyboard; the guest gets the keys
    await page.get_by_role("button", name="Type text…").click()
    await expect(page.locator("#paste-dialog")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(page.locator("#paste-dialog")).to_be_hidden()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "vm-console-qemu.png"))
    assert vm.id
