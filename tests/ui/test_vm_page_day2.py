"""The VM page's guest agent and day-2 sections in headless Chromium against the real stack
(node agent on libvirt's test driver, which has no guest and so no guest agent): what the page
shows about the guest, the run-command box's 409 ``agent_unavailable`` with its hint, and the
create progress view's phase and elapsed time."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from limiquantix.local.stack import Stack
from tests.support.disks import make_qcow2
from tests.support.flows import unique_name
from tests.ui.driving import STATE_TIMEOUT_MS, shoot, sign_in, upload_image

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cloud_image(ui_api: aiohttp.ClientSession, tmp_path_factory: pytest.TempPathFactory
                      ) -> dict[str, Any]:
    path = make_qcow2(tmp_path_factory.mktemp("img") / "tiny.qcow2", "1G")
    return await upload_image(ui_api, path, "day2-cloud", "qcow2")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running_vm(ui_api: aiohttp.ClientSession, cloud_image: dict[str, Any]
                     ) -> dict[str, Any]:
    """One VM the module's tests share (created through the API, left running)."""
    name = unique_name("day2")
    async with ui_api.post("/v1/vms", json={"name": name, "image": cloud_image["id"],
                                             "memory_mib": 256, "disk_gib": 2}) as response:
        assert response.status == 202, await response.text()
        return dict(await response.json())


async def open_vm(page: Page, stack: Stack, name: str, tab: str = "") -> None:
    await sign_in(page, stack, f"/vms/{name}" + (f"/{tab}" if tab else ""))
    await expect(page.locator(".vm-page")).to_have_attribute(
        "data-state", re.compile("running|ready"), timeout=STATE_TIMEOUT_MS)


async def test_the_guest_agent_tab_shows_409_agent_unavailable_with_its_hint(
        ui_stack: Stack, ui_api: aiohttp.ClientSession, page: Page,
        running_vm: dict[str, Any], screenshots: Path) -> None:
    name = running_vm["name"]
    await open_vm(page, ui_stack, name)
    # The overview says what the node knows without an agent: its phases, no OS details.
    guest = page.locator(".guest-card")
    await expect(guest).to_have_attribute("data-agent", "none")
    await expect(guest).to_contain_text("agent not connected")
    async with ui_api.get(f"/v1/vms/{running_vm['id']}") as response:
        record = await response.json()
    phases = record.get("guest", {}).get("phases", {})
    for phase in phases:  # every phase the node recorded is shown with its time
        await expect(guest.locator(f".phase[data-phase='{phase}'] time")).to_have_count(1)
    await shoot(page, screenshots, "vm-overview-guest")

    await page.get_by_role("link", name="Guest agent").click()
    await page.get_by_label("Command", exact=True).fill("cat /etc/hostname")
    async with page.expect_response(f"**/v1/vms/{running_vm['id']}/exec") as answer:
        await page.get_by_role("button", name="Run").click()
    problem = await (await answer.value).json()
    assert (await answer.value).status == 409 and problem["code"] == "agent_unavailable"
    alert = page.get_by_role("alert").filter(has_text="agent_unavailable")
    await expect(alert).to_contain_text(problem["hint"][:40])
    # The password and file forms answer the same way.
    await page.get_by_label("New password").fill("n3w-Passw0rd")
    await page.get_by_role("button", name="Set password").click()
    await expect(page.get_by_role("alert").filter(has_text="agent_unavailable")).to_have_count(2)
    await shoot(page, screenshots, "vm-guest-agent-409")


async def test_the_create_progress_view_shows_the_guest_phase_and_elapsed_time(
        ui_stack: Stack, page: Page, cloud_image: dict[str, Any]) -> None:
    name = unique_name("phases")
    await sign_in(page, ui_stack, f"/vms/new?image={cloud_image['id']}")
    await page.fill("#vm-name", name)
    await page.click("#wizard-next")
    await page.click("#wizard-next")
    await page.fill("#vm-memory", "256")
    await page.get_by_label("Memory unit").select_option("MiB")
    for _ in range(3):
        await page.click("#wizard-next")
    await page.click("#wizard-create")
    elapsed = page.locator("#create-elapsed")
    await expect(elapsed).to_contain_text(re.compile(r"\d+ s since Create"))
    # The node records the boot's first phases on the test driver too.
    await expect(elapsed).to_have_attribute("data-phase", re.compile("defined|booting|network"),
                                            timeout=STATE_TIMEOUT_MS)
    await expect(elapsed).to_contain_text("Guest phase:")
    phases = page.locator("#create-phases")
    await expect(phases.locator(".phase[data-phase='defined'] time")).to_have_count(1)
    await expect(phases.locator(".phase.current")).to_have_count(1)
