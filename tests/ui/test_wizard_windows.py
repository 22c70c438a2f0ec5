"""The wizard's Windows OS family and seed formats (issue 18) in headless Chromium against the
real stack (node agent on libvirt's test driver): the OS family follows the image's ``os``, the
hardware is raised to Windows' minimums and held there, the NetBIOS rule is checked as the
computer name is typed, and what the Review shows (and its lq/curl lines) is what the API
records."""

from __future__ import annotations

import json
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
from tests.ui.driving import follow_progress_to_running, review_value, shoot, sign_in, upload_image

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDt7Z8Xjx3nm5Ir5nq3RvwBHaFBvL0ZKjXqWDe5sQ2Tz a@ui"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def windows_image(ui_api: aiohttp.ClientSession, tmp_path_factory: pytest.TempPathFactory
                        ) -> dict[str, Any]:
    """A (tiny, not bootable) image the library says is Windows Server 2022."""
    path = make_qcow2(tmp_path_factory.mktemp("win") / "win.qcow2", "1G")
    return await upload_image(ui_api, path, "win-server-2022", "qcow2",
                              os="windows-server", version="2022")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def linux_image(ui_api: aiohttp.ClientSession, tmp_path_factory: pytest.TempPathFactory
                      ) -> dict[str, Any]:
    path = make_qcow2(tmp_path_factory.mktemp("linux") / "linux.qcow2", "1G")
    return await upload_image(ui_api, path, "tiny-debian", "qcow2", os="debian", version="12")


async def basics_to_boot(page: Page, name: str) -> None:
    """Basics with ``name``, automatic placement, the default hardware (1 vCPU, 1 GiB, 10 GiB)."""
    await page.fill("#vm-name", name)
    await page.click("#wizard-next")
    await expect(page.get_by_role("heading", name="Placement")).to_be_visible()
    await page.click("#wizard-next")
    await expect(page.get_by_role("heading", name="Hardware")).to_be_visible()
    await page.click("#wizard-next")
    await expect(page.get_by_role("heading", name="Boot media")).to_be_visible()


async def test_a_windows_vm_through_the_wizard_with_minimums_and_netbios_checked(
        ui_stack: Stack, ui_api: aiohttp.ClientSession, page: Page,
        windows_image: dict[str, Any], screenshots: Path) -> None:
    name = unique_name("win")  # 12 characters: a valid default computer name
    await sign_in(page, ui_stack, "/vms/new")
    await basics_to_boot(page, name)

    # The image says Windows: the OS family follows, the hardware is raised to the minimums.
    os_family = page.get_by_role("radiogroup", name="OS family")
    await expect(os_family.get_by_role("radio", name=re.compile("^Linux"))).to_be_checked()
    await page.get_by_role("radio", name="win-server-2022").check()
    await expect(os_family.get_by_role("radio", name=re.compile("^Windows"))).to_be_checked()
    minimums = page.locator(".windows-minimums")
    await expect(minimums).to_contain_text(
        "Windows needs at least 2 vCPUs, 4 GiB of memory and a 64 GiB disk")
    await expect(minimums).to_contain_text("Raised to: 2 vCPUs, 4 GiB of memory, a 64 GiB disk.")
    await shoot(page, screenshots, "wizard-windows-4-boot-media")

    # Going back and asking for less is refused on the Hardware step, before any request.
    await page.get_by_role("button", name=re.compile("Hardware")).click()
    await expect(page.locator("#vm-vcpus")).to_have_value("2")
    await expect(page.locator("#vm-disk")).to_have_value("64")
    await page.fill("#vm-vcpus", "1")
    await page.fill("#vm-disk", "40")
    await page.click("#wizard-next")
    await expect(page.locator("#vm-vcpus-error")).to_have_text("Windows needs at least 2 vCPUs.")
    await expect(page.locator("#vm-disk-error")).to_have_text(
        "Windows needs a disk of at least 64 GiB.")
    await page.fill("#vm-vcpus", "2")
    await page.fill("#vm-disk", "64")
    await page.click("#wizard-next")
    await page.click("#wizard-next")

    # Windows setup: the NetBIOS rule as the name is typed; no Linux user or keys asked.
    await expect(page.get_by_role("heading", name="Windows setup")).to_be_visible()
    await expect(page.locator("#ci-new-key")).to_have_count(0)
    await expect(page.locator(".warning")).to_contain_text("No administrator password")
    await page.fill("#win-computer-name", "WIN_WEB_01")
    await expect(page.locator("#win-computer-name-error")).to_have_text(
        "The computer name may hold only letters, digits and '-'.")
    await page.fill("#win-computer-name", "WINWEB-0123456789")
    await expect(page.locator("#win-computer-name-error")).to_contain_text("is 17 characters")
    await page.click("#wizard-next")
    await expect(page.get_by_role("heading", name="Windows setup")).to_be_visible()  # held here
    await page.fill("#win-computer-name", "WINWEB-01")
    await expect(page.locator("#win-computer-name-error")).to_have_count(0)
    await page.fill("#win-admin-password", "Passw0rd!x")
    await page.fill("#win-timezone", "W. Europe Standard Time")
    await page.fill("#win-locale", "de-DE")
    await page.fill("#win-product-key", "abcde-fghij-klmno-pqrst-uvwxy")
    await expect(page.locator("#win-product-key")).to_have_value("ABCDE-FGHIJ-KLMNO-PQRST-UVWXY")
    await page.check("#win-winrm")
    await page.check("#win-secure-boot")
    await expect(page.locator("#win-version")).to_have_value("2k22")  # from the image's version
    await page.fill("#win-first-logon", "echo one\necho two")
    await page.get_by_text("Join an Active Directory domain").click()
    await page.check("#win-join")
    await page.fill("#win-join-domain", "corp.example.com")
    await page.fill("#win-join-user", "CORP\\joiner")
    await page.fill("#win-join-password", "J0in-secret")
    await page.fill("#win-join-ou", "Servers")
    await page.click("#wizard-next")
    await expect(page.locator("#win-join-ou-error")).to_contain_text("starting with OU= or CN=")
    await page.fill("#win-join-ou", "OU=Servers,DC=corp,DC=example,DC=com")
    await expect(page.locator(".warning")).to_have_text([re.compile("join password in plain text")])
    await shoot(page, screenshots, "wizard-windows-5-setup")
    await page.click("#wizard-next")

    # Review: the OS family, the setup, and lq/curl lines that say the same (no password).
    await expect(page.get_by_role("heading", name="Review")).to_be_visible()
    assert await review_value(page, "OS family") == "Windows (UEFI, TPM 2.0, Hyper-V)"
    assert await review_value(page, "Computer name") == "WINWEB-01"
    assert await review_value(page, "Administrator") == "admin, password set"
    assert await review_value(page, "Remote access") == "RDP on, WinRM on"
    assert await review_value(page, "First-logon commands") == "2"
    assert await review_value(page, "Memory") == "4096 MiB"
    lq = await page.locator("#review-lq").inner_text()
    assert lq.startswith(f"lq vm create {name} --image win-server-2022 --cpus 2 --memory 4G "
                         "--disk 64G --os-type windows --windows-computer-name WINWEB-01 "
                         "--windows-password-prompt --windows-timezone 'W. Europe Standard Time' "
                         "--windows-locale de-DE "
                         "--windows-product-key ABCDE-FGHIJ-KLMNO-PQRST-UVWXY "
                         "--windows-winrm --windows-secure-boot --windows-first-logon 'echo one' "
                         "--windows-first-logon 'echo two' --windows-join-domain corp.example.com "
                         "--windows-join-user 'CORP\\joiner' --windows-join-ou "
                         "'OU=Servers,DC=corp,DC=example,DC=com' --windows windows.yaml"), lq
    assert lq.endswith("--wait running") and "Passw0rd" not in lq and "J0in" not in lq
    assert await review_value(page, "Domain join") == (
        "corp.example.com as CORP\\joiner in OU=Servers,DC=corp,DC=example,DC=com")
    await expect(page.locator("#review-windows-file")).to_have_text('windows_version: "2k22"')
    curl = await page.locator("#review-curl").inner_text()
    body = json.loads(re.search(r"-d '(.*)'$", curl, re.DOTALL).group(1))  # type: ignore[union-attr]
    assert body["os_type"] == "windows" and "cloud_init" not in body
    assert body["windows"]["admin_password"] == "<password>"
    assert body["windows"]["domain_join"]["password"] == "<password>"
    await shoot(page, screenshots, "wizard-windows-6-review")

    await page.click("#wizard-create")
    # No "Ready" phase for Windows: the node cannot tell when Windows is set up.
    await expect(page.locator("#create-progress .phase[data-phase='ready']")).to_have_count(0)
    vm_id = await follow_progress_to_running(page, name)
    await expect(page.locator(".vm-page")).to_contain_text("Windows (computer name WINWEB-01)")
    async with ui_api.get(f"/v1/vms/{vm_id}") as response:
        record = await response.json()
    assert record["os_type"] == "windows"
    windows = record["windows"]
    assert windows["computer_name"] == "WINWEB-01"
    assert windows["timezone"] == "W. Europe Standard Time"
    assert windows["enable_winrm"] is True and windows["secure_boot"] is True
    assert windows["first_logon_commands"] == ["echo one", "echo two"]
    assert windows["windows_version"] == "2k22" and windows["locale"] == "de-DE"
    assert windows["domain_join"]["domain"] == "corp.example.com"
    assert windows["domain_join"]["user"] == "CORP\\joiner"
    assert "Passw0rd" not in json.dumps(record) and "J0in" not in json.dumps(record)
    async with ui_api.delete(f"/v1/vms/{vm_id}") as response:
        assert response.status == 202


async def test_a_linux_vm_with_a_config_drive_and_no_guest_agent_through_the_wizard(
        ui_stack: Stack, ui_api: aiohttp.ClientSession, page: Page,
        linux_image: dict[str, Any]) -> None:
    name = unique_name("cfgdrive")
    await sign_in(page, ui_stack, "/vms/new")
    await basics_to_boot(page, name)
    await page.get_by_role("radio", name="tiny-debian").check()
    await expect(page.get_by_role("radiogroup", name="OS family").get_by_role(
        "radio", name=re.compile("^Linux"))).to_be_checked()
    await expect(page.locator(".windows-minimums")).to_have_count(0)
    await page.click("#wizard-next")
    await expect(page.get_by_role("heading", name="Cloud-init")).to_be_visible()
    await page.fill("#ci-new-key", KEY)
    await page.click("#add-key")
    await page.get_by_label("Seed format").select_option("configdrive")
    await page.uncheck("#ci-guest-agent")
    await page.click("#wizard-next")
    assert await review_value(page, "Guest agent") == "not installed"
    assert await review_value(page, "Seed format") == "config drive (config-2)"
    assert await review_value(page, "OS family") == "Linux"
    lq = await page.locator("#review-lq").inner_text()
    assert "--datasource configdrive" in lq and "--os-type" not in lq
    await page.click("#wizard-create")
    vm_id = await follow_progress_to_running(page, name)
    async with ui_api.get(f"/v1/vms/{vm_id}") as response:
        record = await response.json()
    assert record["cloud_init"]["datasource"] == "configdrive"
    assert record["cloud_init"]["guest_agent"] is False
    assert record.get("os_type", "linux") == "linux"
    async with ui_api.delete(f"/v1/vms/{vm_id}") as response:
        assert response.status == 202
