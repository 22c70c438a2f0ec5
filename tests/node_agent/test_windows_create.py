"""Creating Windows VMs through the API on the real stack (libvirt test driver): os_type from the
image's ``os``, the minimums refused with a 422 that says why, the library's virtio-win ISO
chosen by the gateway and attached by the node (virtio buses then; SATA + e1000e without it), and
the ``windows`` section: the answer file of each flow on the seed, the password sealed on the
record and only in unattend.xml's encoding on the seed."""

from __future__ import annotations

import asyncio
import base64
import io
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import aiohttp
import pycdlib
import pytest
from cryptography.exceptions import InvalidTag

from limiquantix.common.windows import open_password, seal_password
from limiquantix.local.stack import Stack
from limiquantix.node_agent.seed.iso import build_seed_iso
from limiquantix.node_agent.seed.unattend import NS
from tests.support.disks import make_qcow2_with_data
from tests.support.flows import create_vm, unique_name, wait_state

pytestmark = pytest.mark.stack

BIG_ENOUGH = {"vcpus": 2, "memory_mib": 4096, "disk_gib": 64}
PASSWORD = "Winter-2026 pässword"
JOIN_PASSWORD = "join-Only-2026!"


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
    # The same image as Linux (asked explicitly) has no such minimums, and no windows section.
    async with api.post("/v1/vms", json={"name": unique_name(), "image": "win-2022",
                                         "os_type": "linux", "windows": {}}) as response:
        problem = await response.json(content_type=None)
    assert response.status == 422 and problem["code"] == "windows_section_not_windows", problem
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
    running = await wait_state(api, vm["id"], "running")
    # RDP is forwarded like SSH (127.0.0.1, a port from the range).
    assert {f["guest_port"] for f in running["forwards"]} == {22, 3389}
    root = _domain_xml(stack, vm["id"])
    assert root.find("./devices/disk[@device='disk']/target").get("bus") == "virtio"  # type: ignore[union-attr]
    (cdrom,) = [d for d in root.findall("./devices/disk[@device='cdrom']")
                if d.find("target").get("dev") == "sdc"]  # type: ignore[union-attr]
    assert Path(cdrom.find("source").get("file")).is_file()  # type: ignore[union-attr, arg-type]


def _seed_file(stack: Stack, vm_id: str, name: str) -> str:
    (seed,) = stack.node_data_dir("node-a").rglob(f"{vm_id}/seed.iso")
    iso = pycdlib.PyCdlib()
    iso.open(str(seed))
    try:
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, joliet_path=f"/{name}")
        return out.getvalue().decode()
    finally:
        iso.close()


def _admin_password(answer_file: str) -> str:
    root = ET.fromstring(answer_file)
    value = root.find(f".//{{{NS}}}AdministratorPassword/{{{NS}}}Value")
    assert value is not None and value.text
    return base64.b64decode(value.text).decode("utf-16-le").removesuffix("AdministratorPassword")


async def test_windows_install_from_iso_gets_autounattend_with_the_sealed_password(
        api: aiohttp.ClientSession, stack: Stack) -> None:
    await _upload(api, "win-install", build_seed_iso({"SETUP.EXE": b"MZ"}, "CCCOMA_X64"),
                  os="windows")
    name = unique_name("w")[:15]
    vm = await create_vm(api, name=name, image="win-install", **BIG_ENOUGH,
                         windows={"admin_password": PASSWORD, "enable_winrm": True,
                                  "timezone": "Tokyo Standard Time"})
    assert vm["windows"]["admin_password_sealed"] == "<set>"
    assert vm["windows"]["computer_name"] == name  # the VM name by default
    await wait_state(api, vm["id"], "running")
    answer = _seed_file(stack, vm["id"], "Autounattend.xml")
    assert PASSWORD not in answer and _admin_password(answer) == PASSWORD
    assert "Tokyo Standard Time" in answer and "winrm quickconfig" in answer
    assert "<settings pass=\"windowsPE\">" in answer
    # Nor in any service's log.
    assert not any(PASSWORD in p.read_text(errors="replace") for p in stack.root.rglob("*.log"))


async def test_windows_sysprep_image_gets_unattend_and_bad_computer_names_are_refused(
        api: aiohttp.ClientSession, stack: Stack, tmp_path: Path) -> None:
    disk = make_qcow2_with_data(tmp_path / "win.qcow2", mib=1).read_bytes()
    await _upload(api, "win-sysprep", disk, os="windows")
    async with api.post("/v1/vms", json={"name": "a-very-long-windows-vm", "image": "win-sysprep",
                                         **BIG_ENOUGH, "windows": {}}) as response:
        problem = await response.json(content_type=None)
    assert response.status == 422 and problem["code"] == "invalid_computer_name", problem
    assert "15" in problem["detail"] and "computer_name" in problem["hint"]
    vm = await create_vm(api, name=unique_name(), image="win-sysprep", **BIG_ENOUGH,
                         windows={"computer_name": "SQL01", "admin_password": PASSWORD,
                                  "secure_boot": True, "domain_join": {
                                      "domain": "corp.example.com", "user": "CORP\\joiner",
                                      "password": JOIN_PASSWORD,
                                      "ou": "OU=Servers,DC=corp,DC=example,DC=com"}})
    assert vm["windows"]["domain_join"] == {
        "domain": "corp.example.com", "user": "CORP\\joiner", "password_sealed": "<set>",
        "ou": "OU=Servers,DC=corp,DC=example,DC=com"}
    await wait_state(api, vm["id"], "running")
    root = _domain_xml(stack, vm["id"])
    assert root.find("./features/smm") is not None
    assert root.find("./os/firmware/feature[@name='enrolled-keys']") is not None
    answer = _seed_file(stack, vm["id"], "unattend.xml")
    assert "windowsPE" not in answer and "<ComputerName>SQL01</ComputerName>" in answer
    assert _admin_password(answer) == PASSWORD
    join = ET.fromstring(answer).find(
        f".//{{{NS}}}component[@name='Microsoft-Windows-UnattendedJoin']")
    assert join is not None
    assert [(e.tag.split("}")[1], e.text) for e in join.iter() if e.text and e.text.strip()] == [
        ("Domain", "CORP"), ("Password", JOIN_PASSWORD), ("Username", "joiner"),
        ("JoinDomain", "corp.example.com"),
        ("MachineObjectOU", "OU=Servers,DC=corp,DC=example,DC=com")]
    # A cloud-init update rebuilds the seed: the answer file stays on it (it was once dropped).
    async with api.post(f"/v1/vms/{vm['id']}/cloud-init",
                        json={"hostname": "sql01"}) as response:
        assert response.status == 202, await response.text()
    deadline = asyncio.get_running_loop().time() + 20
    while "local-hostname: sql01" not in _seed_file(stack, vm["id"], "meta-data"):
        assert asyncio.get_running_loop().time() < deadline, "the seed was not rebuilt"
        await asyncio.sleep(0.1)
    assert _seed_file(stack, vm["id"], "unattend.xml") == answer
    # The join password is never in the API's view, the KV record or a log.
    assert not any(JOIN_PASSWORD in p.read_text(errors="replace")
                   for p in stack.root.rglob("*.log"))


def test_sealed_password_opens_only_with_the_node_key_and_vm_id() -> None:
    key = b"k" * 32
    sealed = seal_password(key, "vm-1", PASSWORD)
    assert PASSWORD not in base64.b64decode(sealed).decode(errors="replace")
    assert open_password(key, "vm-1", sealed) == PASSWORD
    with pytest.raises(InvalidTag):
        open_password(key, "vm-2", sealed)
    with pytest.raises(InvalidTag):
        open_password(b"x" * 32, "vm-1", sealed)
