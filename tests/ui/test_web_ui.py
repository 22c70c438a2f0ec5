"""The web UI driven in headless Chromium against the real stack (NATS, API, image library,
node agent on libvirt's test driver), as a person would use it.

The UI never polls VMs: after the create answer, every state it shows came over the SSE stream,
so seeing ``running`` and then the row disappear proves the live path end to end.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import BrowserContext, Page, expect

from limiquantix.api import routes_ui
from limiquantix.local.stack import Stack
from tests.browser import chromium, strict_page
from tests.flows import create_vm, make_qcow2, unique_name, wait_state

pytestmark = pytest.mark.browser

STATE_TIMEOUT_MS = 30_000
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDt7Z8Xjx3nm5Ir5nq3RvwBHaFBvL0ZKjXqWDe5sQ2Tz ui@test"


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """Debian's Chromium with a new, empty profile (no browser is downloaded)."""
    async with chromium(tmp_path / "chromium-profile", viewport={"width": 1440, "height": 900},
                        permissions=["clipboard-read", "clipboard-write"]) as context:
        yield context


@pytest.fixture
async def page(browser: BrowserContext) -> AsyncIterator[Page]:
    async with strict_page(browser) as page:
        yield page


async def sign_in(page: Page, stack: Stack, token: str | None = None) -> None:
    await page.goto(stack.api_url + "/")
    dialog = page.locator("#token-dialog")
    await expect(dialog).to_be_visible()
    await page.fill("#token-input", token if token is not None else stack.api_token)
    await page.click("#token-save")


async def fill_create_form(page: Page, **fields: str) -> None:
    await page.click("#new-vm")
    form = page.locator("#create-form")
    await expect(form).to_be_visible()
    for name, value in fields.items():
        field = form.locator(f"[name={name}]")
        if await field.evaluate("el => el.tagName") == "SELECT":
            await field.select_option(value)
        else:
            await field.fill(value)


async def vm_status(stack: Stack, vm_id: str) -> int:
    async with aiohttp.ClientSession(headers=stack.headers()) as http, \
            http.get(f"{stack.api_url}/v1/vms/{vm_id}") as response:
        return response.status


async def test_create_see_running_stop_start_and_delete_a_vm_from_the_browser(
        stack: Stack, page: Page, tmp_path: Path) -> None:
    image = make_qcow2(tmp_path / "base.qcow2")
    name = unique_name("ui")

    await sign_in(page, stack)
    await expect(page.locator("#token-dialog")).to_be_hidden()
    await expect(page.locator("#live")).to_have_attribute("data-state", "open")
    await expect(page.locator("#nodes tr[data-node-id='node-a'][data-status='online']")
                 ).to_be_visible()

    await fill_create_form(page, name=name, image=str(image), vcpus="1", memory_mib="256",
                           disk_gib="1", network_mode="user", ssh_key=SSH_KEY)
    started = time.monotonic()
    await page.click("#create-form button[type=submit]")
    await expect(page.locator("#create-form")).to_be_hidden()

    row = page.locator(f"#vms tr[data-vm-name='{name}']")
    await expect(row).to_have_attribute("data-state", "running", timeout=STATE_TIMEOUT_MS)
    seconds_to_running = time.monotonic() - started
    vm_id = await row.get_attribute("data-vm-id")
    assert vm_id
    cells = row.locator("td")
    await expect(cells.nth(2)).to_have_text("node-a")
    await expect(cells.nth(3)).to_have_text("1")
    await expect(cells.nth(4)).to_have_text("256 MiB")
    await expect(cells.nth(5)).to_have_text(str(image))
    # User networking: the node forwarded SSH on 127.0.0.1 and the row shows how to connect.
    ssh = cells.nth(6)
    await expect(ssh).to_have_text(re.compile(r"^ssh -p \d+ admin@127\.0\.0\.1$"))
    await ssh.get_by_role("button", name=f"Copy SSH command of {name}").click()
    assert await page.evaluate("navigator.clipboard.readText()") == await ssh.inner_text()
    console = row.get_by_role("link", name="Console")
    await expect(console).to_have_attribute("href", f"/v1/vms/{vm_id}/console")
    console_page = await page.request.get(stack.api_url + f"/v1/vms/{vm_id}/console")
    assert console_page.status == 200 and "text/html" in console_page.headers["content-type"]
    await expect(row.get_by_role("button", name="Stop")).to_be_enabled()
    await expect(row.get_by_role("button", name="Start")).to_be_disabled()
    await expect(page.locator("#error")).to_be_hidden()
    # The node's allocations follow: the VM count at once, the vCPUs in use once the node has
    # heartbeated them (the UI polls nodes every 5 s: heartbeats send no event).
    node_cells = page.locator("#nodes tr[data-node-id='node-a'] td")
    await expect(node_cells.nth(3)).to_have_text("1")
    await expect(node_cells.nth(1)).to_contain_text("1 / ", timeout=15_000)
    shot = tmp_path / "ui-vm-running.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}; create -> running seen in the browser: {seconds_to_running:.2f} s")

    await row.get_by_role("button", name="Stop").click()
    await expect(row).to_have_attribute("data-state", "stopped", timeout=STATE_TIMEOUT_MS)
    await expect(row.get_by_role("button", name="Stop")).to_be_disabled()
    await row.get_by_role("button", name="Start").click()
    await expect(row).to_have_attribute("data-state", "running", timeout=STATE_TIMEOUT_MS)

    await row.get_by_role("button", name="Delete").click()
    await row.get_by_role("button", name="Confirm delete").click()
    await expect(row).to_have_count(0, timeout=STATE_TIMEOUT_MS)
    assert await vm_status(stack, vm_id) == 404


async def test_an_api_problem_is_shown_as_one_line_with_its_hint(
        stack: Stack, page: Page, tmp_path: Path) -> None:
    image = make_qcow2(tmp_path / "base.qcow2")
    await sign_in(page, stack)
    await expect(page.locator("#live")).to_have_attribute("data-state", "open")
    # Far more memory than the node has: the API answers 409 no_capacity.
    await fill_create_form(page, name=unique_name("big"), image=str(image),
                           memory_mib="4000000", disk_gib="1")
    async with page.expect_response("**/v1/vms") as answer:
        await page.click("#create-form button[type=submit]")
    response = await answer.value
    assert response.status == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = await response.json()
    assert problem["code"] == "no_capacity" and problem["hint"]
    error = page.locator("#error-text")
    await expect(error).to_be_visible()
    # One line: code, detail, then the hint saying what to do.
    await expect(error).to_have_text(
        f"{problem['code']}: {problem['detail']} — {problem['hint']}")
    assert "\n" not in await error.inner_text()
    await expect(page.locator("#create-form")).to_be_visible()  # the user can fix and resend
    await page.screenshot(path=str(tmp_path / "ui-problem.png"))


async def test_a_wrong_token_is_rejected_and_asked_again(stack: Stack, page: Page) -> None:
    await sign_in(page, stack, token="not-the-token")
    await expect(page.locator("#live")).to_have_attribute("data-state", "unauthorized")
    await expect(page.locator("#token-dialog")).to_be_visible()
    await expect(page.locator("#token-error")).to_have_text("The API rejected this token.")
    await page.fill("#token-input", stack.api_token)
    await page.click("#token-save")
    await expect(page.locator("#live")).to_have_attribute("data-state", "open")
    stored = await page.evaluate("localStorage.getItem('lq.token')")
    assert stored == stack.api_token


async def test_sse_parser_handles_events_split_anywhere_across_chunks(page: Page) -> None:
    """The fetch transport's parser, run in the browser on a stream cut at every offset."""
    stream = (
        "retry: 2000\r\n: connected\r\n\r\n"
        'id: 7\nevent: vm.state_changed\ndata: {"vm_id":"a","state":"running"}\n\n'
        ': keep-alive\r\rid: 8\revent: vm.deleted\rdata: {"vm_id":"a",\rdata: "name":"x"}\r\r'
    )
    expected = {
        "retry": 2000,
        "got": [
            {"id": "7", "event": "vm.state_changed", "data": '{"vm_id":"a","state":"running"}'},
            {"id": "8", "event": "vm.deleted", "data": '{"vm_id":"a",\n"name":"x"}'},
        ],
    }
    app = web.Application()
    routes_ui.setup(app)
    async with TestServer(app, host="127.0.0.1") as server:
        await page.goto(str(server.make_url("/ui/")))
        runs = await page.evaluate("""async (stream) => {
            const { SseParser } = await import("/ui/sse.js");
            const runs = [];
            for (let cut = 0; cut <= stream.length; cut++) {
              const got = [];
              const parser = new SseParser((m) => got.push(m));
              parser.feed(stream.slice(0, cut));
              parser.feed(stream.slice(cut));
              runs.push({ cut, got, retry: parser.retryMs });
            }
            return runs;
        }""", stream)
    assert len(runs) == len(stream) + 1
    for run in runs:
        assert {"got": run["got"], "retry": run["retry"]} == expected, run["cut"]


async def test_the_table_catches_up_after_the_event_stream_drops(
        stack: Stack, page: Page, browser: BrowserContext, tmp_path: Path) -> None:
    """Events missed while offline are not lost: the UI reconnects and reads the lists again."""
    image = make_qcow2(tmp_path / "base.qcow2")
    await sign_in(page, stack)
    await expect(page.locator("#live")).to_have_attribute("data-state", "open")
    await browser.set_offline(True)
    await expect(page.locator("#live")).to_have_attribute("data-state", "reconnecting")
    name = unique_name("offline")
    async with aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as api:
        created = await create_vm(api, name=name, image=str(image), memory_mib=256, disk_gib=1)
        await wait_state(api, created["id"], "running")
    await browser.set_offline(False)
    await expect(page.locator("#live")).to_have_attribute("data-state", "open",
                                                          timeout=STATE_TIMEOUT_MS)
    row = page.locator(f"#vms tr[data-vm-name='{name}']")
    await expect(row).to_have_attribute("data-state", "running")
