"""The web UI driven in headless Chromium against the real stack (NATS, API, image library, node
agent on libvirt's test driver), the way a person clicks.

After Create, every state the UI shows comes over the event stream (the app never polls VMs), so
seeing ``running`` in the progress view and on the VM page proves the live path end to end.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page, expect

from limiquantix.local.stack import Stack
from tests.support.disks import make_qcow2
from tests.support.flows import unique_name
from tests.support.origin import Origin
from tests.support.waits import eventually
from tests.ui.driving import (
    STATE_TIMEOUT_MS,
    follow_progress_to_running,
    make_iso,
    no_sideways_scroll,
    review_value,
    shoot,
    sign_in,
    upload_image,
    wait_image,
)

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDt7Z8Xjx3nm5Ir5nq3RvwBHaFBvL0ZKjXqWDe5sQ2Tz a@ui"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb0NxP4T8vYk3X2QbW7Lr6m1JwZ9yA8cE5dF0gH1iJk b@ui"
BAD_CONFIG = "#cloud-config\npackages:\n  - htop\nruncmd: [echo hi\nwrite_files: []\n"
GOOD_CONFIG = "#cloud-config\npackages:\n  - htop\nruncmd:\n  - echo hi\n"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def iso_image(ui_api: aiohttp.ClientSession, tmp_path_factory: pytest.TempPathFactory
                    ) -> dict[str, Any]:
    path = make_iso(tmp_path_factory.mktemp("iso") / "installer.iso")
    return await upload_image(ui_api, path, "tiny-installer", "iso")


async def wizard_basics_to_hardware(page: Page, name: str) -> None:
    """Basics (live name validation), Placement on node-a, Hardware 1 vCPU, 256 MiB, 2 GiB."""
    await expect(page.get_by_role("heading", name="Basics")).to_be_visible()
    await page.fill("#vm-name", "Bad_Name")
    await expect(page.locator("#vm-name-error")).to_contain_text("Lower-case letters")
    await page.fill("#vm-name", name)
    await expect(page.locator("#vm-name-error")).to_have_count(0)
    await page.fill("#vm-description", "made by the wizard test")
    await page.click("#wizard-next")
    await expect(page.get_by_role("heading", name="Placement")).to_be_visible()
    await expect(page.get_by_role("meter", name="vCPUs allocated")).to_have_count(1)
    await page.get_by_label("Node node-a").check()
    await page.click("#wizard-next")
    await expect(page.get_by_role("heading", name="Hardware")).to_be_visible()
    await page.fill("#vm-vcpus", "1")
    await page.fill("#vm-memory", "256")
    await page.get_by_label("Memory unit").select_option("MiB")
    await page.fill("#vm-disk", "0")
    await page.click("#wizard-next")
    await expect(page.locator("#vm-disk-error")).to_contain_text("whole number")
    await page.fill("#vm-disk", "2")
    await page.click("#wizard-next")
    await expect(page.get_by_role("heading", name="Boot media")).to_be_visible()


async def test_wizard_cloud_image_with_keys_and_custom_config_then_stop_force_stop_delete(
        ui_stack: Stack, ui_api: aiohttp.ClientSession, page: Page, cloud_image: dict[str, Any],
        screenshots: Path) -> None:
    name = unique_name("wiz")
    await sign_in(page, ui_stack, "/vms/new")
    await expect(page.locator("#live")).to_have_attribute("data-state", "open")
    await shoot(page, screenshots, "wizard-1-basics")
    await wizard_basics_to_hardware(page, name)

    # Boot media: the three cards, the cloud image list from /v1/images.
    cards = page.get_by_role("radiogroup", name="Boot media").get_by_role("radio")
    await expect(cards).to_have_count(3)
    await page.click("#wizard-next")
    await expect(page.locator("#image-error")).to_have_text("Choose a cloud image.")
    await page.get_by_role("radio", name="tiny-cloud").check()
    await shoot(page, screenshots, "wizard-4-boot-media")
    await page.click("#wizard-next")

    # Cloud-init: no key and no password warns; keys added one by one, a bad one refused.
    await expect(page.get_by_role("heading", name="Cloud-init")).to_be_visible()
    await expect(page.locator(".warning")).to_contain_text("No SSH key and no password")
    await page.fill("#ci-new-key", "ssh-ed25519 not-base64!")
    await page.click("#add-key")
    await expect(page.locator("#ci-new-key-error")).to_have_text("the key data is not valid base64")
    for key in (KEY_A, KEY_B):
        await page.fill("#ci-new-key", key)
        await page.click("#add-key")
    await expect(page.locator("#keys-label")).to_have_text("SSH public keys (2)")
    await expect(page.locator(".warning")).to_have_count(0)
    await page.get_by_role("button", name="Remove SSH key 1").click()
    await expect(page.locator("#keys-label")).to_have_text("SSH public keys (1)")
    await expect(page.locator(".key-list li")).to_contain_text("b@ui")
    await page.fill("#ci-hostname", "wizard-host")
    await page.get_by_text("Advanced: custom cloud-config").click()
    await page.check("#ci-custom")
    await page.fill("#ci-user-data", BAD_CONFIG)
    await shoot(page, screenshots, "wizard-5-cloud-init")
    await page.click("#wizard-next")

    # Review: everything, the key count, custom config yes, lq and curl.
    await expect(page.get_by_role("heading", name="Review")).to_be_visible()
    assert await review_value(page, "SSH keys") == "1"
    assert await review_value(page, "Custom cloud-config") == "yes"
    method = await review_value(page, "Provisioning method")
    assert method == "Cloud image (automated with cloud-init)"
    assert await review_value(page, "Image") == "tiny-cloud"
    assert await review_value(page, "Memory") == "256 MiB"
    lq = await page.locator("#review-lq").inner_text()
    assert lq.startswith(f"lq vm create {name} --image tiny-cloud --cpus 1 --memory 256M --disk 2G")
    assert "--ssh-key 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb0" in lq and "a@ui" not in lq
    assert "--user-data user-data.yaml" in lq and "--node node-a" in lq
    curl = await page.locator("#review-curl").inner_text()
    body = json.loads(re.search(r"-d '(.*)'$", curl, re.DOTALL).group(1))  # type: ignore[union-attr]
    assert body["cloud_init"]["ssh_authorized_keys"] == [KEY_B]
    assert body["cloud_init"]["user_data"] == BAD_CONFIG
    await page.get_by_role("button", name="Copy lq command").click()
    assert await page.evaluate("navigator.clipboard.readText()") == lq
    await shoot(page, screenshots, "wizard-6-review")

    # The server refuses the YAML: the wizard goes back and shows it at its line.
    async with page.expect_response("**/v1/vms") as answer:
        await page.click("#wizard-create")
    problem = await (await answer.value).json()
    assert problem["code"] == "invalid_user_data" and problem["line"] == 5, problem
    await expect(page.get_by_role("heading", name="Cloud-init")).to_be_visible()
    error_line = page.locator(".code-line.error")
    await expect(error_line).to_have_attribute("data-line", "5")
    await expect(error_line.locator(".line-message")).to_contain_text(problem["detail"][:30])
    await expect(page.locator(".gutter-line.error")).to_have_text("5")
    await shoot(page, screenshots, "wizard-5-cloud-init-error-at-line")
    await page.fill("#ci-user-data", GOOD_CONFIG)
    await expect(page.locator(".code-line.error")).to_have_count(0)
    await page.click("#wizard-next")
    started = time.monotonic()
    await page.click("#wizard-create")
    vm_id = await follow_progress_to_running(page, name)
    print(f"wizard Create -> running seen in the browser: {time.monotonic() - started:.2f} s")

    # The VM page: overview and actions.
    vm_page = page.locator(".vm-page")
    await expect(page.get_by_role("heading", name="Machine")).to_be_visible()
    await expect(page.locator("#ssh-command")).to_contain_text(re.compile(r"ssh -p \d+"))
    await expect(page.get_by_text("made by the wizard test")).to_be_visible()
    await shoot(page, screenshots, "vm-overview")
    await page.get_by_role("button", name="Shut down").click()
    await expect(vm_page).to_have_attribute("data-state", "stopped", timeout=STATE_TIMEOUT_MS)
    await page.get_by_role("button", name="Start").click()
    await expect(vm_page).to_have_attribute("data-state", re.compile("running|ready"),
                                            timeout=STATE_TIMEOUT_MS)
    await page.get_by_role("button", name="Force stop").click()
    await expect(vm_page).to_have_attribute("data-state", "stopped", timeout=STATE_TIMEOUT_MS)
    await page.get_by_role("link", name="Events").last.click()
    await expect(page.locator(".timeline .event[data-type='vm.state_changed']").first
                 ).to_be_visible()
    await shoot(page, screenshots, "vm-events")
    await page.get_by_role("link", name="Cloud-init").last.click()
    await expect(page.locator("#rerun-hostname")).to_have_value("wizard-host")
    await shoot(page, screenshots, "vm-cloud-init")

    await page.get_by_role("button", name="Delete", exact=True).click()
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_be_visible()
    await page.keyboard.press("Escape")  # Escape closes a dialog
    await expect(dialog).to_be_hidden()
    await page.get_by_role("button", name="Delete", exact=True).click()
    await dialog.get_by_role("button", name="Delete VM").click()
    await expect(page).to_have_url(ui_stack.api_url + "/")
    await expect(page.locator(f"#vms li[data-vm-id='{vm_id}']")).to_have_count(
        0, timeout=STATE_TIMEOUT_MS)

    async def gone() -> bool:
        # The page follows the events; the record's GET is the gateway's view, a moment behind.
        async with ui_api.get(f"/v1/vms/{vm_id}") as response:
            return response.status == 404

    await eventually(gone, timeout_s=30, what="the deleted VM answering 404")


@pytest.mark.parametrize("boot", ["iso", "none"])
async def test_wizard_iso_and_none_boot_media_create_running_vms(
        ui_stack: Stack, ui_api: aiohttp.ClientSession, page: Page, iso_image: dict[str, Any],
        screenshots: Path, boot: str) -> None:
    name = unique_name(boot)
    await sign_in(page, ui_stack, "/vms/new")
    await wizard_basics_to_hardware(page, name)
    await page.locator(f".boot-card[data-boot='{boot}'] input").check()
    if boot == "iso":
        await page.get_by_role("radio", name="tiny-installer").check()
    await page.click("#wizard-next")
    # No cloud-init with an ISO or no boot media: the step sets the network only.
    await expect(page.get_by_role("heading", name="Network")).to_be_visible()
    await expect(page.locator("#ci-new-key")).to_have_count(0)
    await page.click("#wizard-next")
    assert await review_value(page, "Cloud-init") == "not used"
    wanted = "tiny-installer" if boot == "iso" else "none (blank disk)"
    assert await review_value(page, "Image") == wanted
    lq = await page.locator("#review-lq").inner_text()
    assert ("--image tiny-installer" in lq) == (boot == "iso")
    await shoot(page, screenshots, f"wizard-6-review-{boot}")
    await page.click("#wizard-create")
    vm_id = await follow_progress_to_running(page, name)
    async with ui_api.get(f"/v1/vms/{vm_id}") as response:
        record = await response.json()
    assert record.get("image", "") == (iso_image["id"] if boot == "iso" else "")
    async with ui_api.delete(f"/v1/vms/{vm_id}") as response:
        assert response.status == 202


async def test_an_upload_from_the_browser_reaches_100_percent_and_becomes_active(
        ui_stack: Stack, page: Page, tmp_path: Path, screenshots: Path) -> None:
    path = tmp_path / "uploaded-disk.qcow2"
    make_qcow2(path, "64M")
    with path.open("ab") as f:  # some bytes, so progress has something to show
        f.write(b"\0" * (8 << 20))
    await sign_in(page, ui_stack, "/images")
    await page.set_input_files("#upload-input", str(path))
    row = page.locator("li.upload[data-file='uploaded-disk.qcow2']")
    await expect(row).to_have_attribute("data-status", "done", timeout=STATE_TIMEOUT_MS)
    await expect(row.locator(".progress-text")).to_have_text("100 %")
    card = page.locator("#images li[data-image-name='uploaded-disk']")
    await expect(card).to_have_attribute("data-state", "active", timeout=STATE_TIMEOUT_MS)
    await shoot(page, screenshots, "images-after-upload")
    # The image's "Create VM" opens the wizard with it chosen.
    await card.get_by_role("link", name="Create a VM from uploaded-disk").click()
    await page.fill("#vm-name", unique_name("from-image"))
    for _ in range(3):
        await page.click("#wizard-next")
    await expect(page.get_by_role("radio", name="uploaded-disk")).to_be_checked()


async def test_import_by_url_with_sha256_and_a_failed_import_shows_why_with_retry(
        ui_stack: Stack, page: Page, origin: Origin, screenshots: Path) -> None:
    disk = make_qcow2(origin.root / "imported.qcow2", "32M")
    digest = hashlib.sha256(disk.read_bytes()).hexdigest()
    await sign_in(page, ui_stack, "/images")
    await page.fill("#import-url", "not a url")
    await page.click("#import-submit")
    await expect(page.locator("#import-url-error")).to_contain_text("A full URL")
    await page.fill("#import-url", origin.file_url("imported.qcow2"))
    await page.fill("#import-name", "from-url")
    await page.fill("#import-sha", digest)
    await page.click("#import-submit")
    card = page.locator("#images li[data-image-name='from-url']")
    await expect(card).to_have_attribute("data-state", "active", timeout=STATE_TIMEOUT_MS)
    await expect(card).to_contain_text(digest)

    await page.fill("#import-url", origin.file_url("imported.qcow2"))
    await page.fill("#import-name", "wrong-sum")
    await page.fill("#import-sha", "0" * 64)
    await page.click("#import-submit")
    failed = page.locator("#images li[data-image-name='wrong-sum']")
    await expect(failed).to_have_attribute("data-state", "error", timeout=STATE_TIMEOUT_MS)
    await expect(failed.locator(".image-error")).to_contain_text(re.compile("checksum|sha256"))
    await expect(failed.get_by_role("button", name="Retry wrong-sum")).to_be_visible()
    await shoot(page, screenshots, "images-import")


async def test_deleting_an_image_in_use_is_refused_naming_the_vms(
        ui_stack: Stack, ui_api: aiohttp.ClientSession, page: Page, cloud_image: dict[str, Any],
        screenshots: Path) -> None:
    name = unique_name("user")
    async with ui_api.post("/v1/vms", json={"name": name, "image": cloud_image["id"],
                                             "memory_mib": 128, "disk_gib": 2}) as response:
        assert response.status == 202
        vm = await response.json()
    try:
        await sign_in(page, ui_stack, "/images")
        card = page.locator("#images li[data-image-name='tiny-cloud']")
        await expect(card).to_contain_text(f"Used by {name}")
        await card.get_by_role("button", name="Delete image tiny-cloud").click()
        await page.locator("#confirm-dialog").get_by_role("button", name="Delete image").click()
        await expect(page.get_by_role("alert").filter(has_text="image_in_use")).to_be_visible()
        users = page.locator(".warning", has_text="tiny-cloud is used by:")
        await expect(users.get_by_role("link", name=name)).to_be_visible()
        await expect(card).to_have_attribute("data-state", "active")
        await shoot(page, screenshots, "images-in-use")
    finally:
        async with ui_api.delete(f"/v1/vms/{vm['id']}"):
            pass


async def test_a_rejected_token_reopens_sign_in_anywhere(ui_stack: Stack, page: Page) -> None:
    await sign_in(page, ui_stack, "/nodes")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#token-dialog")).to_be_visible()
    await page.fill("#token-input", "not-the-token")
    await page.click("#token-save")
    await expect(page.locator("#token-error")).to_have_text("The API rejected this token.")
    await page.keyboard.press("Escape")  # sign-in cannot be dismissed
    await expect(page.locator("#token-dialog")).to_be_visible()
    await page.fill("#token-input", ui_stack.api_token)
    await page.click("#token-save")
    await expect(page.locator("#live")).to_have_attribute("data-state", "open")
    await expect(page.locator("#nodes li[data-node-id='node-a']")).to_be_visible()
    # The token is revoked/replaced behind the app's back: the next call answers 401.
    await page.evaluate("localStorage.setItem('lq.token', 'revoked')")
    await page.get_by_role("link", name="Create VM").first.click()
    await page.fill("#vm-name", "x")
    await page.get_by_role("link", name="Images").click()
    await page.fill("#import-url", "http://127.0.0.1:9/x.qcow2")
    await page.click("#import-submit")
    await expect(page.locator("#token-dialog")).to_be_visible()
    await expect(page.locator("#token-error")).to_have_text("The API rejected this token.")
    await page.fill("#token-input", ui_stack.api_token)
    await page.click("#token-save")
    await expect(page.locator("#token-dialog")).to_be_hidden()


async def test_every_page_fits_390_px_without_sideways_scrolling(
        ui_stack: Stack, ui_api: aiohttp.ClientSession, browser: BrowserContext,
        cloud_image: dict[str, Any], origin: Origin, screenshots: Path) -> None:
    """Long strings (a checksum mismatch with two sha256s, long names) wrap inside their cards."""
    make_qcow2(origin.root / "long.qcow2", "16M")
    async with ui_api.post("/v1/images", json={
            "source_url": origin.file_url("long.qcow2"), "sha256": "f" * 64,
            "name": "a-very-long-image-name-" + "x" * 60}) as response:
        assert response.status == 202
        failing = await response.json()
    await wait_image(ui_api, failing["id"], "error")
    name = unique_name("narrow-" + "n" * 30)
    async with ui_api.post("/v1/vms", json={"name": name, "image": cloud_image["id"],
                                             "memory_mib": 128, "disk_gib": 2}) as response:
        assert response.status == 202
        vm = await response.json()
    page = await browser.new_page()
    await page.set_viewport_size({"width": 390, "height": 844})
    try:
        await sign_in(page, ui_stack, "/")
        pages = {"vms": "/", "images": "/images", "nodes": "/nodes", "events": "/events",
                 "vm": f"/vms/{name}", "vm-console": f"/vms/{name}/console",
                 "vm-log": f"/vms/{name}/log", "vm-guest": f"/vms/{name}/guest",
                 "vm-snapshots": f"/vms/{name}/snapshots", "vm-clone": f"/vms/{name}/clone",
                 "vm-hardware": f"/vms/{name}/hardware", "wizard": "/vms/new"}
        for label, path in pages.items():
            await page.goto(ui_stack.api_url + path)
            await expect(page.locator("main h1").first).to_be_visible()
            await page.wait_for_timeout(300)  # lists and fonts settle
            await no_sideways_scroll(page)
            await shoot(page, screenshots, f"390-{label}")
        await page.goto(ui_stack.api_url + "/vms/new")
        await page.fill("#vm-name", name[:20])
        for step in ("placement", "hardware", "boot", "cloud-init"):
            await page.click("#wizard-next")
            if step == "boot":
                await page.get_by_role("radio", name="tiny-cloud").check()
            await no_sideways_scroll(page)
        await page.check("#ci-custom") if await page.locator("#ci-custom").is_visible() else None
        await page.click("#wizard-next")
        await no_sideways_scroll(page)
        await shoot(page, screenshots, "390-wizard-review")
    finally:
        await page.close()
        async with ui_api.delete(f"/v1/vms/{vm['id']}"):
            pass
