"""A new user's first hour (issue 9) on the real stack: requests that cannot work are refused
before anything is made, catalog images download on first use, capacity is over-committed as
the field does, and a failed VM holds nothing."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from limiquantix.local.stack import Stack
from limiquantix.node_agent.host_checks import kvm_access_warning
from tests.support.disks import make_qcow2, make_qcow2_with_data
from tests.support.flows import (
    FAST_ENV,
    create_vm,
    get_vm,
    sse_events,
    unique_name,
    wait_gone,
    wait_state,
)
from tests.support.origin import ALLOW_LOCAL_ORIGINS, Origin

pytestmark = pytest.mark.stack


async def _problem(api: aiohttp.ClientSession, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with api.post("/v1/vms", json=body) as response:
        assert response.headers["Content-Type"].startswith("application/problem+json")
        return response.status, dict(await response.json(content_type=None))


async def _no_vms(api: aiohttp.ClientSession) -> None:
    async with api.get("/v1/vms") as response:
        assert (await response.json())["items"] == []


async def _upload(api: aiohttp.ClientSession, name: str, path: Path) -> dict[str, Any]:
    async with api.post("/v1/images", json={"name": name}) as response:
        assert response.status == 201, await response.text()
        record = await response.json()
    async with api.put(f"/v1/images/{record['id']}/file", data=path.read_bytes()) as response:
        assert response.status == 200, await response.text()
        return dict(await response.json())


async def test_an_unknown_image_is_refused_with_404_and_leaves_no_vm(
        api: aiohttp.ClientSession) -> None:
    name = unique_name()
    status, problem = await _problem(api, {"name": name, "image": "no-such-image"})
    assert status == 404 and problem["code"] == "image_not_found"
    assert "lq image list" in problem["hint"]
    await _no_vms(api)
    assert (await get_vm(api, name))[0] == 404  # the name was never taken


async def test_node_paths_are_refused_unless_allowed_and_say_nothing_of_existence(
        api: aiohttp.ClientSession) -> None:
    answers = [await _problem(api, {"name": unique_name(), "image": path})
               for path in ("/etc/shadow", "/etc/no-such-file", "/tmp/../etc/shadow")]
    for status, problem in answers:
        assert status == 422 and problem["code"] == "host_path_not_allowed"
        assert "lq image upload" in problem["hint"]
    assert answers[0][1]["detail"] == answers[1][1]["detail"]  # exists or not: same words
    await _no_vms(api)


async def test_an_image_named_by_its_name_is_used_and_a_too_small_disk_refused(
        api: aiohttp.ClientSession, stack: Stack, tmp_path: Path) -> None:
    image = await _upload(api, "tiny-os", make_qcow2_with_data(tmp_path / "tiny.qcow2", mib=1))
    vm = await create_vm(api, name=unique_name(), image="tiny-os", memory_mib=256, disk_gib=1)
    assert vm["image"] == image["id"]
    await wait_state(api, vm["id"], "running")
    await _upload(api, "big-os", make_qcow2(tmp_path / "big.qcow2", "3G"))
    status, problem = await _problem(api, {"name": unique_name(), "image": "big-os",
                                           "disk_gib": 2})
    assert status == 422 and problem["code"] == "disk_too_small"
    assert "3 GiB" in problem["detail"] and "--disk 3G" in problem["hint"]


async def test_a_vm_without_an_image_gets_a_blank_disk_and_no_seed(
        api: aiohttp.ClientSession, stack: Stack) -> None:
    vm = await create_vm(api, name=unique_name(), memory_mib=256, disk_gib=2)
    assert vm["image"] == ""
    await wait_state(api, vm["id"], "running")
    files = sorted(p.name for p in (stack.node_data_dir("node-a") / "images" / vm["id"]).iterdir())
    assert "disk.qcow2" in files and "seed.iso" not in files
    root = ET.fromstring(
        (stack.node_data_dir("node-a") / "images" / vm["id"] / "domain.xml").read_text())
    # No seed drive: the only CD-ROM is the empty media drive every domain has (ISO inserts).
    cdroms = root.findall("./devices/disk[@device='cdrom']")
    assert [(c.find("target").get("dev"), c.find("source")) for c in cdroms] == [  # type: ignore[union-attr]
        ("sde", None)]


@pytest.fixture
async def small_node_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """A stack whose one node says it has 2 CPUs (as this machine): the ratios decide."""
    async with Stack(tmp_path / "s", nodes=(), extra_env=FAST_ENV) as stack:
        await stack.start_node("node-a", LQ_NODE_VCPUS="2", LQ_NODE_MEMORY_MIB="4096")
        yield stack


async def test_five_one_vcpu_vms_fit_on_a_two_core_node_and_the_refusal_names_the_setting(
        small_node_stack: Stack, tmp_path: Path) -> None:
    stack = small_node_stack
    async with aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as api:
        async with api.get("/v1/nodes/node-a") as response:
            node = await response.json()
        assert (node["vcpus"], node["cpu_allocation_ratio"], node["vcpus_capacity"]) == (2, 4.0, 8)
        assert (node["memory_mib"], node["memory_mib_capacity"]) == (4096, 4096)
        vms = [await create_vm(api, name=unique_name(), memory_mib=256, disk_gib=1)
               for _ in range(8)]
        for vm in vms:
            await wait_state(api, vm["id"], "running")
        status, problem = await _problem(api, {"name": unique_name(), "memory_mib": 256})
        assert status == 409 and problem["code"] == "no_capacity"
        assert "LQ_CPU_ALLOCATION_RATIO" in problem["hint"]
        async with api.get("/v1/nodes/node-a") as response:
            node = await response.json()
        assert (node["allocated_vcpus"], node["free_vcpus"]) == (8, 0)


async def test_a_failed_create_frees_its_capacity_and_start_retries_it(
        small_node_stack: Stack, tmp_path: Path) -> None:
    """A VM whose image vanished fails on the node, takes no room, and once the image is back
    ``start`` makes it for real."""
    stack = small_node_stack
    image = tmp_path / "later.qcow2"
    async with aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as api:
        failed = await create_vm(api, name=unique_name(), image=str(image), vcpus=8,
                                 memory_mib=256, disk_gib=1)
        record = await wait_state(api, failed["id"], "error")
        assert record["error"]["code"] == "image_not_found" and not record["holds_resources"]
        assert str(stack.node_data_dir("node-a")) not in str(record["error"])
        other = await create_vm(api, name=unique_name(), vcpus=8, memory_mib=256, disk_gib=1)
        await wait_state(api, other["id"], "running")  # the failed VM's 8 vCPUs were free
        async with api.delete(f"/v1/vms/{other['id']}") as response:
            assert response.status == 202
        await wait_gone(api, other["id"])
        make_qcow2_with_data(image, mib=1)
        async with api.post(f"/v1/vms/{failed['id']}/start") as response:
            assert response.status == 202, await response.text()
        retried = await wait_state(api, failed["id"], "running")
        assert retried["error"] is None and retried["holds_resources"] is True


@pytest.fixture
async def mirror(tmp_path: Path) -> AsyncIterator[Origin]:
    """A local mirror of the catalog (``LQ_CATALOG_MIRROR``) serving debian-12 only."""
    root = tmp_path / "mirror"
    root.mkdir()
    make_qcow2_with_data(root / "debian-12.qcow2", mib=8)
    async with Origin(root) as server:
        yield server


async def test_a_vm_from_a_remote_catalog_image_downloads_it_and_runs_in_one_call(
        tmp_path: Path, mirror: Origin) -> None:
    env = {**FAST_ENV, **ALLOW_LOCAL_ORIGINS, "LQ_CATALOG_MIRROR": f"{mirror.url}/files"}
    async with Stack(tmp_path / "s", extra_env=env) as stack, \
            aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as api:
        async with api.get("/v1/images/debian-12") as response:
            assert (await response.json())["state"] == "remote"
        events = sse_events(api, "?since=600")  # replayed: the whole story of this run
        vm = await create_vm(api, name=unique_name(), image="debian-12", memory_mib=256,
                             disk_gib=4)
        assert vm["state"] == "pending" and vm["image"] == "debian-12"
        await wait_state(api, vm["id"], "running", timeout_s=60)
        order: dict[str, int] = {}
        async for event_id, kind, data in events:
            if kind == "image.state_changed" and data["image_id"] == "debian-12":
                order.setdefault(f"image {data['state']}", int(event_id))
            if kind == "vm.state_changed" and data["vm_id"] == vm["id"]:
                order.setdefault(f"vm {data['state']}", int(event_id))
            if "vm running" in order:
                break
        # The node waited for the library's import before making the disk.
        assert order["vm pending"] < order["image active"] < order["vm creating"]
        assert mirror.hits["/files/debian-12.qcow2"] == 1
        # A catalog entry the mirror lacks: the VM fails with the import's own reason.
        failed = await create_vm(api, name=unique_name(), image="rocky-9", memory_mib=256,
                                 disk_gib=10)
        record = await wait_state(api, failed["id"], "error", timeout_s=60)
        assert record["error"]["code"] == "image_import_failed"
        assert "404" in record["error"]["message"] and "lq image show" in record["error"]["hint"]
        assert record["holds_resources"] is False


async def test_an_image_in_error_is_refused_with_409(
        api: aiohttp.ClientSession, stack: Stack, tmp_path: Path) -> None:
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("this is not a disk image\n" * 100)
    record = await _upload_expecting_failure(api, "notes", not_an_image)
    status, problem = await _problem(api, {"name": unique_name(), "image": record["id"]})
    assert status == 409 and problem["code"] == "image_not_ready"
    assert "error" in problem["detail"] and "lq image show" in problem["hint"]
    await _no_vms(api)


async def _upload_expecting_failure(api: aiohttp.ClientSession, name: str,
                                    path: Path) -> dict[str, Any]:
    async with api.post("/v1/images", json={"name": name, "format": "qcow2"}) as response:
        record = await response.json()
    async with api.put(f"/v1/images/{record['id']}/file", data=path.read_bytes()) as response:
        assert response.status >= 400
    async with api.get(f"/v1/images/{record['id']}") as response:
        failed = await response.json()
    assert failed["state"] == "error", failed
    return dict(failed)


def test_after_scripts_libvirtd_the_qemu_user_can_open_dev_kvm() -> None:
    """scripts/libvirtd.sh ran before the suite (both README commands run it): libvirt's QEMU
    user can open /dev/kvm, so no create pays for a capability re-probe."""
    assert kvm_access_warning() is None
