"""How the browser tests drive the web UI: sign in, screenshots, layout checks, images made
through the API, the wizard's review and progress views. Shared by every module in tests/ui."""

from __future__ import annotations

import asyncio
import io
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pycdlib
from playwright.async_api import Page, expect

from limiquantix.local.stack import Stack

# How long a VM state may take to reach the browser (the test driver is fast; a busy CI is not).
STATE_TIMEOUT_MS = 30_000


async def sign_in(page: Page, stack: Stack, path: str = "/") -> None:
    """Open ``path`` signed in (the browser context keeps the token once given)."""
    await page.goto(stack.api_url + path)
    if await page.evaluate("localStorage.getItem('lq.token')") != stack.api_token:
        await expect(page.locator("#token-dialog")).to_be_visible()
        await page.fill("#token-input", stack.api_token)
        await page.click("#token-save")
    await expect(page.locator("#live")).to_have_attribute("data-state", "open")


async def shoot(page: Page, screenshots: Path, name: str) -> None:
    """A full-page screenshot kept as a test artefact."""
    path = screenshots / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000


async def no_sideways_scroll(page: Page) -> None:
    """The page fits its viewport's width (long strings wrap)."""
    widths = await page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"{page.url}: page is {widths[0]} px wide in {widths[1]} px"


async def upload_image(api: aiohttp.ClientSession, path: Path, name: str, fmt: str,
                       **fields: str) -> dict[str, Any]:
    """An image through the API (POST then PUT; ``fields`` such as os and version go on the
    record), waited until active."""
    async with api.post("/v1/images", json={"name": name, "format": fmt, **fields}) as response:
        assert response.status == 201, await response.text()
        record = await response.json()
    async with api.put(f"/v1/images/{record['id']}/file", data=path.read_bytes()) as response:
        assert response.status in {200, 201, 202}, await response.text()
    return await wait_image(api, record["id"], "active")


async def wait_image(api: aiohttp.ClientSession, image_id: str, *states: str,
                     timeout_s: float = 30.0) -> dict[str, Any]:
    """The image's record once it is in one of ``states`` (polled, with a deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with api.get(f"/v1/images/{image_id}") as response:
            record = dict(await response.json())
        if record.get("state", "queued") in states:
            return record
        assert time.monotonic() < deadline, record
        await asyncio.sleep(0.1)


def make_iso(path: Path) -> Path:
    """An ISO 9660 image with one file (enough for the library and a CD-ROM drive)."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident="INSTALLER")
    data = b"an installer would be here\n"
    iso.add_fp(io.BytesIO(data), len(data), "/README.TXT;1")
    iso.write(str(path))
    iso.close()
    return path


async def review_value(page: Page, label: str) -> str:
    """The wizard Review step's value for ``label``."""
    return (await page.locator(f".review-row[data-row='{label}'] dd").inner_text()).strip()


async def follow_progress_to_running(page: Page, name: str) -> str:
    """Watch the create progress view reach running, open the VM's page; its id."""
    progress = page.locator("#create-progress")
    await expect(progress).to_be_visible()
    await expect(progress).to_have_attribute("data-state", re.compile("running|ready"),
                                             timeout=STATE_TIMEOUT_MS)
    running = page.locator("#create-progress .phase[data-phase='running']")
    await expect(running).to_have_class(re.compile("done"))
    vm_page = page.locator(".vm-page")
    # The guest's first readiness phase can arrive as the link is clicked: the phases box it
    # opens above the link moves it between Playwright's aim and its click (seen in CI: the
    # page stayed on the wizard). A user clicks again; so does the test, at most twice more.
    for attempt in range(3):
        await page.get_by_role("link", name=f"Open {name}").click()
        try:
            await expect(vm_page).to_be_visible(timeout=5000)
            break
        except AssertionError:
            if attempt == 2 or not page.url.endswith("/vms/new"):
                raise
    vm_id = await vm_page.get_attribute("data-vm-id")
    assert vm_id
    return vm_id
