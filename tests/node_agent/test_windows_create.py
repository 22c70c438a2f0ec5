"""Creating Windows VMs through the API on the real stack (libvirt test driver): os_type from the
image's ``os``, the minimums refused with a 422 that says why, and the library's virtio-win ISO
chosen by the gateway and attached by the node (virtio buses then; SATA + e1000e without it)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from limiquantix.local.stack import Stack
from limiquantix.node_agent.seed_iso import build_seed_iso
from tests.support.disks import make_qcow2_with_data
from tests.support.flows import create_vm, unique_name, wait_state

pytestmark = pytest.mark.stack

BIG_ENOUGH = {"vcpus": 2, "memory_mib": 4096, "disk_gib": 64}


async def _upload(api: aiohttp.ClientSession, name: str, data: bytes,
                  os: str = "") -> dict[str, Any]:
    async with api.post("/v1/images", json={"name": name, "os": os}) as response:
        assert response.status == 201, await response.text()
        record = await response.json()
    async with api.put(f"/v1/images/{record['id']}/file", data=data) as response:
        assert response.status == 200, await response.text()
        return dict(await response.json())


def _domain_xml(stack: Stack, vm_id: str) -> ET.Element:
    (path,) = stack.node_data_dir("node-a").rglob(f"{vm_id}/domain.xml")
    return ET.fromstring(path.read_text())


async def test_windows_image_too_small_request_is_refused_saying_what_windows_needs(
        api: aiohttp.ClientSession, tmp_path: Path) -> None:
    disk = make_qcow2_with_data(tmp_path / "win.qcow2", mib=1).read_bytes()
    await _upload(api, "win-2022", disk, os="windows")
    async with api.post("/v1/vms", json={"name": unique_name(), "image": "win-2022",
                                         "vcpus": 1, "memory_mib": 2048,
                                         "disk_gib": 64}) as response:
        problem = await response.json(content_type=None)
    assert response.status == 422, problem
    assert problem["code"] == "windows_too_small"
    assert "vcpus 1 < 2" in problem["detail"] and "memory_mib 2048 < 4096" in problem["detail"]
    assert "disk_gib" not in problem["detail"].split("asked:")[1]
    assert "--vcpus 2" in problem["hint"] and "--memory 4G" in problem["hint"]
    # The same image as Linux (asked explicitly) has no such minimums.
    vm = await create_vm(api, name=unique_name(), image="win-2022", os_type="linux",
                         memory_mib=256, disk_gib=1)
    assert vm.get("os_type", "linux") == "linux"


async def test_windows_vm_gets_sata_and_e1000e_then_virtio_once_virtio_win_is_in_the_library(
        api: aiohttp.ClientSession, stack: Stack, tmp_path: Path) -> None:
    disk = make_qcow2_with_data(tmp_path / "win.qcow2", mib=1).read_bytes()
    await _upload(api, "win-11", disk, os="windows11")
    plain = await create_vm(api, name=unique_name(), image="win-11", **BIG_ENOUGH)
    assert plain["os_type"] == "windows" and not plain.get("drivers_image")
    await wait_state(api, plain["id"], "running")
    root = _domain_xml(stack, plain["id"])
    assert root.find("./os").get("firmware") == "efi"  # type: ignore[union-attr]
    assert root.find("./devices/tpm") is not None
    assert root.find("./devices/disk[@device='disk']/target").get("bus") == "sata"  # type: ignore[union-attr]

    drivers = await _upload(api, "virtio-win-0.1.262",
                            build_seed_iso({"README": b"virtio-win drivers"}, "virtio-win"))
    assert drivers["format"] == "iso"
    vm = await create_vm(api, name=unique_name(), image="win-11", network={"mode": "isolated"},
                         **BIG_ENOUGH)
    assert vm["drivers_image"] == drivers["id"]
    await wait_state(api, vm["id"], "running")
    root = _domain_xml(stack, vm["id"])
    assert root.find("./devices/disk[@device='disk']/target").get("bus") == "virtio"  # type: ignore[union-attr]
    (cdrom,) = [d for d in root.findall("./devices/disk[@device='cdrom']")
                if d.find("target").get("dev") == "sdc"]  # type: ignore[union-attr]
    assert Path(cdrom.find("source").get("file")).is_file()  # type: ignore[union-attr, arg-type]
