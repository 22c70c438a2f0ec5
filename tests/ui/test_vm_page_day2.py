"""The VM page's guest agent and day-2 sections in headless Chromium against the real stack
(node agent on libvirt's test driver, which has no guest and so no guest agent): what the page
shows about the guest, the run-command box's 409 ``agent_unavailable`` with its hint, the
create progress view's phase and elapsed time, and snapshots, clones (the linked clones a VM
is the base of), templates and hardware."""

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
from tests.ui.driving import STATE_TIMEOUT_MS, make_iso, shoot, sign_in, upload_image

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


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


async def make_vm(api: aiohttp.ClientSession, image: dict[str, Any], prefix: str) -> dict[str, Any]:
    async with api.post("/v1/vms", json={"name": unique_name(prefix), "image": image["id"],
                                         "memory_mib": 256, "disk_gib": 2}) as response:
        assert response.status == 202, await response.text()
        return dict(await response.json())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def iso_image(ui_api: aiohttp.ClientSession, tmp_path_factory: pytest.TempPathFactory
                    ) -> dict[str, Any]:
    path = make_iso(tmp_path_factory.mktemp("iso") / "tools.iso")
    return await upload_image(ui_api, path, "day2-tools", "iso")


async def test_snapshots_taken_with_memory_reverted_and_deleted_from_the_vm_page(
        ui_stack: Stack, ui_api: aiohttp.ClientSession, page: Page,
        cloud_image: dict[str, Any], screenshots: Path) -> None:
    vm = await make_vm(ui_api, cloud_image, "snap")
    await open_vm(page, ui_stack, vm["name"], "snapshots")
    await expect(page.locator("#snap-memory")).to_be_enabled()
    await page.get_by_label("Name", exact=True).fill("before upgrade")
    await expect(page.locator("#snap-name-error")).to_contain_text("letters, digits")
    await page.get_by_label("Name", exact=True).fill("before-upgrade")
    await page.get_by_label("Description (optional)").fill("taken by the UI test")
    await page.check("#snap-memory")
    await page.get_by_role("button", name="Take snapshot").click()
    item = page.locator("#snapshots .snapshot[data-snapshot='before-upgrade']")
    await expect(item).to_have_attribute("data-state", "ready", timeout=STATE_TIMEOUT_MS)
    await expect(item).to_contain_text("disk and memory")
    await expect(page.locator(".activity-snapshots .event[data-type='vm.snapshot']").first
                 ).to_contain_text("snapshot before-upgrade created")
    # The same name again is refused before any request.
    await page.get_by_label("Name", exact=True).fill("before-upgrade")
    await expect(page.locator("#snap-name-error")).to_have_text("before-upgrade exists already.")
    await shoot(page, screenshots, "vm-snapshots")

    await item.get_by_role("button", name="Revert to before-upgrade").click()
    await page.locator("#confirm-dialog").get_by_role("button", name="Revert VM").click()
    await expect(page.locator(".activity-snapshots")).to_contain_text(
        "snapshot before-upgrade reverted", timeout=STATE_TIMEOUT_MS)
    await expect(item).to_have_attribute("data-state", "ready")
    await expect(page.locator(".vm-page")).to_have_attribute(
        "data-state", re.compile("running|ready"), timeout=STATE_TIMEOUT_MS)

    await item.get_by_role("button", name="Delete snapshot before-upgrade").click()
    await page.locator("#confirm-dialog").get_by_role("button", name="Delete snapshot").click()
    await expect(item).to_have_count(0, timeout=STATE_TIMEOUT_MS)
    async with ui_api.get(f"/v1/vms/{vm['id']}/snapshots") as response:
        assert (await response.json())["items"] == []
    # Stopped, a memory snapshot is not offered (there is no memory to save).
    async with ui_api.post(f"/v1/vms/{vm['id']}/force-stop") as response:
        assert response.status == 202
    await expect(page.locator(".vm-page")).to_have_attribute("data-state", "stopped",
                                                             timeout=STATE_TIMEOUT_MS)
    await expect(page.locator("#snap-memory")).to_be_disabled()
    await expect(page.get_by_text("A stopped VM has no memory to save.")).to_be_visible()


async def test_a_clone_runs_and_a_published_template_becomes_an_active_image(
        ui_stack: Stack, ui_api: aiohttp.ClientSession, page: Page,
        cloud_image: dict[str, Any], screenshots: Path) -> None:
    vm = await make_vm(ui_api, cloud_image, "src")
    await open_vm(page, ui_stack, vm["name"], "clone")
    clone_name = unique_name("clone")
    await page.get_by_label("Name of the clone").fill(vm["name"])
    await expect(page.locator("#clone-name-error")).to_contain_text("exists already")
    await page.get_by_label("Name of the clone").fill(clone_name)
    await page.get_by_role("button", name="Clone", exact=True).click()
    clone = page.locator("#clones li")
    await expect(clone).to_contain_text(clone_name)
    await expect(clone).to_have_attribute("data-state", re.compile("running|ready"),
                                          timeout=STATE_TIMEOUT_MS)
    await expect(page.locator(".activity-clone")).to_contain_text(f"cloned from {vm['id']}")

    template = unique_name("tpl")
    await page.get_by_label("Image name").fill(template)
    await page.get_by_role("button", name="Publish").click()
    published = page.locator("#published")
    await expect(published).to_contain_text(template)
    await expect(published).to_have_attribute("data-state", "active", timeout=STATE_TIMEOUT_MS)
    await expect(published.get_by_role("link", name=f"Create a VM from {template}")).to_be_visible()
    await expect(page.locator(".activity-clone")).to_contain_text("publish done")
    await shoot(page, screenshots, "vm-clone-publish")
    async with ui_api.get("/v1/images") as response:
        images = (await response.json())["images"]
    image = next(i for i in images if i["name"] == template)
    assert image["labels"]["published-from"] == vm["id"]
    # No guest agent on the test driver: the publish could not generalize, and says so.
    await expect(published).to_have_attribute("data-generalized", "false")
    await expect(published).to_contain_text("not generalized")


async def test_a_stopped_vm_becomes_a_template_whose_linked_clone_runs(
        ui_stack: Stack, ui_api: aiohttp.ClientSession, page: Page,
        cloud_image: dict[str, Any], screenshots: Path) -> None:
    vm = await make_vm(ui_api, cloud_image, "tmpl")
    await open_vm(page, ui_stack, vm["name"], "clone")
    # Running and not a template: no template yet; a linked clone is offered (at a snapshot
    # taken for it), full by default.
    await expect(page.locator("#template-make")).to_be_disabled()
    await expect(page.locator("#clone-linked")).to_be_enabled()
    await expect(page.locator("#clone-linked")).not_to_be_checked()
    async with ui_api.post(f"/v1/vms/{vm['id']}/force-stop") as response:
        assert response.status == 202, await response.text()
    await expect(page.locator(".vm-page")).to_have_attribute("data-state", "stopped",
                                                             timeout=STATE_TIMEOUT_MS)
    await page.locator("#template-make").click()
    await page.get_by_role("button", name="Make template").last.click()
    await expect(page.locator("#template")).to_have_attribute("data-template", "true")
    await expect(page.locator("#clone-linked")).to_be_checked()

    clone_name = unique_name("linked")
    await page.get_by_label("Name of the clone").fill(clone_name)
    await page.get_by_role("button", name="Clone", exact=True).click()
    clone = page.locator("#clones li")
    await expect(clone).to_contain_text(f"{clone_name}")
    await expect(clone).to_contain_text("linked")
    await expect(clone).to_have_attribute("data-state", re.compile("running|ready"),
                                          timeout=STATE_TIMEOUT_MS)
    await expect(page.locator("#linked-clones")).to_contain_text(clone_name)
    await shoot(page, screenshots, "vm-template-linked-clone")
    await sign_in(page, ui_stack, "/vms")
    row = page.locator(f".vm-row[data-vm-name='{vm['name']}']")
    await expect(row.locator(".badge.template")).to_be_visible()
    await expect(row.get_by_role("button", name=f"Start {vm['name']}")).to_be_disabled()


async def test_a_vm_shows_the_linked_clones_kept_on_its_snapshots_before_any_delete(
        ui_stack: Stack, ui_api: aiohttp.ClientSession, page: Page,
        cloud_image: dict[str, Any], screenshots: Path) -> None:
    """A linked clone of a VM that is not a template (made through the API) is listed on the
    VM's Clone tab with its snapshot; that snapshot's Delete is disabled saying why (the
    gateway answers 409 snapshot_in_use), and the VM's delete dialog names the clone."""
    vm = await make_vm(ui_api, cloud_image, "base")
    await open_vm(page, ui_stack, vm["name"], "clone")
    await expect(page.locator("#linked-clones")).to_have_count(0)
    clone_name = unique_name("lc")
    async with ui_api.post(f"/v1/vms/{vm['id']}/clone",
                           json={"name": clone_name, "linked": True}) as response:
        assert response.status == 202, await response.text()
        clone = await response.json()
    snapshot = f"clone-{clone_name}"  # taken by the gateway for the clone
    linked = page.locator("#linked-clones")
    await expect(linked).to_contain_text("Linked clones (1), each kept on a snapshot of this VM")
    item = linked.locator(f"li[data-vm-name='{clone_name}']")
    await expect(item).to_contain_text(f"{clone_name} (snapshot {snapshot})")
    await expect(item.get_by_role("link", name=clone_name)).to_have_attribute(
        "href", f"/vms/{clone_name}")
    await expect(item.locator(".badge")).to_have_attribute("data-state", re.compile(r"\w+"))
    await expect(linked).to_contain_text(f"{vm['name']} and those snapshots cannot be deleted")
    await shoot(page, screenshots, "vm-linked-clones")

    await page.get_by_role("link", name="Snapshots", exact=True).click()
    snap = page.locator(f"#snapshots .snapshot[data-snapshot='{snapshot}']")
    await expect(snap.locator(".snapshot-clones")).to_have_text(
        f"Base of linked clones: {clone_name} (it is kept while they exist)")
    delete = snap.get_by_role("button", name=f"Delete snapshot {snapshot}")
    await expect(delete).to_be_disabled()
    await expect(delete).to_have_attribute(
        "title", f"Base of linked clones: {clone_name}. Delete them first, then the snapshot.")
    async with ui_api.delete(f"/v1/vms/{vm['id']}/snapshots/{snapshot}") as response:
        assert response.status == 409  # what the disabled button spares the user
        assert (await response.json())["code"] == "snapshot_in_use"

    await page.get_by_role("group", name="Actions").get_by_role(
        "button", name="Delete", exact=True).click()
    dialog = page.locator("#confirm-dialog")
    await expect(dialog.locator("#delete-blocked")).to_contain_text(
        f"{vm['name']} is the base of 1 linked clone (kept on its snapshots): {clone_name}.")
    await expect(dialog.locator(f"li[data-vm-name='{clone_name}']")).to_contain_text(
        f"(snapshot {snapshot})")
    await expect(dialog.get_by_role("button", name="Delete VM")).to_be_disabled()
    await shoot(page, screenshots, "vm-delete-blocked-by-linked-clone")
    await dialog.get_by_role("button", name="Cancel").click()

    # Once the clone is gone, the page follows: the snapshot can be deleted again.
    async with ui_api.delete(f"/v1/vms/{clone['id']}") as response:
        assert response.status == 202, await response.text()
    await expect(snap.locator(".snapshot-clones")).to_have_count(0, timeout=STATE_TIMEOUT_MS)
    await expect(delete).to_be_enabled()
    await expect(delete).not_to_have_attribute("title", re.compile("."))


async def test_resize_disks_and_iso_media_from_the_hardware_tab(
        ui_stack: Stack, ui_api: aiohttp.ClientSession, page: Page,
        cloud_image: dict[str, Any], iso_image: dict[str, Any], screenshots: Path) -> None:
    vm = await make_vm(ui_api, cloud_image, "hw")
    await open_vm(page, ui_stack, vm["name"], "hardware")
    # Running: more vCPUs than its ceiling and a smaller disk are refused before any request.
    await page.fill("#resize-vcpus", "8")
    await page.fill("#resize-disk", "1")
    await page.get_by_role("button", name="Resize").click()
    await expect(page.locator("#resize-vcpus-error")).to_contain_text("stop it for more")
    await expect(page.locator("#resize-disk-error")).to_contain_text("never shrinks")
    await page.fill("#resize-vcpus", str(vm["vcpus"]))
    await page.fill("#resize-disk", "3")
    await page.get_by_role("button", name="Resize").click()
    await expect(page.locator(".activity-hardware .event[data-type='vm.resized']")).to_contain_text(
        f"{vm['vcpus']} vCPUs, 256 MiB, 3 GiB", timeout=STATE_TIMEOUT_MS)

    await page.get_by_label("Disk name").fill("data")
    await page.get_by_label("Size (GiB)").fill("1")
    await page.get_by_role("button", name="Add disk").click()
    disk = page.locator("#disks tr[data-disk='data']")
    await expect(disk).to_have_attribute("data-state", "attached", timeout=STATE_TIMEOUT_MS)
    await page.get_by_label("Disk name").fill("data")
    await expect(page.locator("#disk-name-error")).to_contain_text("has a disk named data")

    await page.get_by_label("ISO image").select_option(label="day2-tools")
    await page.get_by_role("button", name="Insert").click()
    await expect(page.locator("#media")).to_have_attribute("data-state", "inserted",
                                                           timeout=STATE_TIMEOUT_MS)
    await expect(page.locator("#media")).to_contain_text("day2-tools")
    await shoot(page, screenshots, "vm-hardware")

    await page.get_by_role("button", name="Eject").click()
    await expect(page.locator("#media")).to_have_attribute("data-state", "empty",
                                                           timeout=STATE_TIMEOUT_MS)
    await disk.get_by_role("button", name="Remove disk data").click()
    await page.locator("#confirm-dialog").get_by_role("button", name="Remove disk").click()
    await expect(disk).to_have_count(0, timeout=STATE_TIMEOUT_MS)
    async with ui_api.get(f"/v1/vms/{vm['id']}") as response:
        record = await response.json()
    assert record["disk_gib"] == 3 and record.get("disks", []) == [] and not record.get("media")
