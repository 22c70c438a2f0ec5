"""The VM list as a fleet view (issue 16) in headless Chromium against the real stack: pages of
``GET /v1/vms`` (``limit``, ``next_cursor``), filters by label, state and node (kept in the URL),
labels given in the wizard, and VMs of a node that went offline shown as ``unknown``. A second
node agent is started (and stopped) in this module's own stack."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from limiquantix.local.stack import Stack
from tests.support.flows import unique_name
from tests.ui.driving import STATE_TIMEOUT_MS, review_value, shoot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


async def create(api: aiohttp.ClientSession, name: str, **extra: Any) -> dict[str, Any]:
    """A VM with no boot media (a blank disk): quick on the test driver."""
    async with api.post("/v1/vms", json={"name": name, "memory_mib": 128, "disk_gib": 1,
                                         **extra}) as response:
        assert response.status == 202, await response.text()
        return dict(await response.json())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def batch(ui_api: aiohttp.ClientSession) -> str:
    """Three VMs labelled batch=<this id>, one of them also tier=db; the label's value."""
    value = unique_name("b")
    for index in range(3):
        labels = {"batch": value, **({"tier": "db"} if index == 1 else {})}
        await create(ui_api, f"{value}-{index}", labels=labels)
    return value


async def names_shown(page: Page) -> list[str]:
    return [n for n in await page.locator("#vms li").evaluate_all(
        "items => items.map(i => i.dataset.vmName)") if n]


async def test_the_list_pages_and_filters_by_label_and_state(
        ui_stack: Stack, page: Page, batch: str, screenshots: Path) -> None:
    await sign_in(page, ui_stack, f"/?label=batch={batch}&limit=2")
    await expect(page.locator("#vms li")).to_have_count(2)
    assert await names_shown(page) == [f"{batch}-0", f"{batch}-1"]
    await page.get_by_role("button", name="Next").click()
    await expect(page.locator("#vms li")).to_have_count(1)
    assert await names_shown(page) == [f"{batch}-2"]
    await expect(page.get_by_role("button", name="Next")).to_be_disabled()
    await page.get_by_role("button", name="Previous").click()
    await expect(page.locator("#vms li")).to_have_count(2)
    await expect(page.locator(f"#vms li[data-vm-name='{batch}-1'] .labels")).to_have_text(
        f"batch={batch}, tier=db")

    # Two labels must both match; a bad key is refused before any request.
    await page.locator("#filter-labels").fill("Tier=db")
    await expect(page.locator("#filter-labels-hint")).to_contain_text("not a label key")
    await page.locator("#filter-labels").fill(f"batch={batch} tier=db")
    await page.locator("#filter-labels").press("Enter")
    await expect(page.locator("#vms li")).to_have_count(1)
    assert await names_shown(page) == [f"{batch}-1"]
    assert "tier%3Ddb" in page.url or "tier=db" in page.url
    await page.get_by_label("State").select_option("error")
    await expect(page.get_by_text("No VM matches these filters.")).to_be_visible()
    await page.get_by_role("button", name="Clear filters").click()
    await expect(page.locator("#vms li").first).to_be_visible()
    await shoot(page, screenshots, "vm-list-filters")


async def test_labels_from_the_wizard_reach_the_record_and_the_filter(
        ui_stack: Stack, ui_api: aiohttp.ClientSession, page: Page) -> None:
    name = unique_name("lbl")
    await sign_in(page, ui_stack, "/vms/new")
    await page.fill("#vm-name", name)
    await page.fill("#vm-labels", "team=ui, Bad=1")
    await expect(page.locator("#vm-labels-error")).to_contain_text("'Bad' is not a label key")
    await page.fill("#vm-labels", f"team=ui owner={name}")
    for _ in range(2):
        await page.click("#wizard-next")
    await page.fill("#vm-memory", "128")
    await page.get_by_label("Memory unit").select_option("MiB")
    await page.fill("#vm-disk", "1")
    await page.click("#wizard-next")
    await page.locator(".boot-card[data-boot='none'] input").check()
    await page.click("#wizard-next")
    await page.click("#wizard-next")
    assert await review_value(page, "Labels") == f"team=ui, owner={name}"
    assert f"--label team=ui --label owner={name}" in await page.locator("#review-lq").inner_text()
    await page.click("#wizard-create")
    await expect(page.locator("#create-progress")).to_have_attribute(
        "data-state", re.compile("running|ready"), timeout=STATE_TIMEOUT_MS)
    async with ui_api.get(f"/v1/vms?label=owner={name}") as response:
        items = (await response.json())["items"]
    assert [vm["labels"] for vm in items] == [{"team": "ui", "owner": name}]


async def test_vms_of_a_node_gone_offline_are_shown_as_unknown(
        ui_stack: Stack, ui_api: aiohttp.ClientSession, page: Page, screenshots: Path) -> None:
    await ui_stack.start_node("node-b")
    await ui_stack.wait_node("node-b")
    vm = await create(ui_api, unique_name("on-b"), node="node-b")
    await sign_in(page, ui_stack, "/?node=node-b")
    row = page.locator(f"#vms li[data-vm-id='{vm['id']}']")
    await expect(row).to_have_attribute("data-state", "running", timeout=STATE_TIMEOUT_MS)
    await ui_stack.stop_node("node-b")
    # The node's heartbeat key expires (3 heartbeats), then the API answers its VMs as unknown.
    await expect(row).to_have_attribute("data-state", "unknown", timeout=STATE_TIMEOUT_MS)
    await expect(row.locator(".vm-unknown")).to_contain_text("Node node-b is offline")
    await page.get_by_label("State").select_option("unknown")
    await expect(page.locator("#vms li")).to_have_count(1)
    await shoot(page, screenshots, "vm-list-unknown")
    await row.get_by_role("link", name=vm["name"], exact=True).click()
    await expect(page.locator(".vm-page")).to_have_attribute("data-state", "unknown")
    await expect(page.get_by_text("Node node-b is offline:")).to_be_visible()
