"""Issue 2 on libvirtd + QEMU (TCG here): a real domain, overlay, seed ISO and VNC display."""

from __future__ import annotations

import asyncio
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import aiohttp
import pytest

from limiquantix.local.stack import Stack
from tests.support.disks import make_qcow2
from tests.support.flows import FAST_ENV, action, create_vm, unique_name, wait_gone, wait_state

pytestmark = [pytest.mark.e2e, pytest.mark.stack]


def domain_xml(name: str) -> ET.Element:
    out = subprocess.run(["virsh", "-c", "qemu:///system", "dumpxml", name], check=True,
                         capture_output=True, text=True).stdout
    return ET.fromstring(out)


def remove_domain(name: str) -> None:
    """Cleanup after a failed test: the domain may be left where the failure stopped it."""
    for verb in ("destroy", "undefine"):
        subprocess.run(["virsh", "-c", "qemu:///system", verb, name], capture_output=True)


def domain_exists(name: str) -> bool:
    return subprocess.run(["virsh", "-c", "qemu:///system", "dominfo", name],
                          capture_output=True).returncode == 0


async def rfb_banner(host: str, port: int) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    try:
        return await asyncio.wait_for(reader.readexactly(12), 10)
    finally:
        writer.close()


async def test_real_domain_from_a_qcow2_overlay_with_seed_and_vnc(qemu_tmp: Path) -> None:
    root = qemu_tmp / "s"
    image = make_qcow2(qemu_tmp / "base.qcow2", "256M")
    async with Stack(root, libvirt_uri="qemu:///system", extra_env=FAST_ENV) as stack, \
            aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as api:
        name = unique_name("e2e")
        try:
            await _lifecycle(stack, api, name, image)
        finally:
            remove_domain(f"lq-{name}")


async def _lifecycle(stack: Stack, api: aiohttp.ClientSession, name: str, image: Path) -> None:
    """create → running (overlay, seed, VNC) → force-stop → start → delete, nothing left."""
    vm = await create_vm(api, name=name, image=str(image), memory_mib=256, disk_gib=1)
    record = await wait_state(api, vm["id"], "running", timeout_s=60)
    vm_dir = stack.node_data_dir("node-a") / "images" / vm["id"]

    info = json.loads(subprocess.run(
        ["qemu-img", "info", "--force-share", "--output=json", str(vm_dir / "disk.qcow2")],
        check=True, capture_output=True, text=True).stdout)
    assert info["backing-filename"] == str(image)
    assert info["virtual-size"] == 1 << 30  # grown to disk_gib

    xml = domain_xml(f"lq-{name}")
    assert xml.get("type") in {"qemu", "kvm"}
    sources = [d.find("source").get("file") for d in xml.iter("disk")
               if d.find("source") is not None]
    assert str(vm_dir / "seed.iso") in sources
    assert str(vm_dir / "disk.qcow2") in sources

    assert record["vnc"]["host"] == "127.0.0.1" and record["vnc"]["port"] >= 5900
    assert await rfb_banner(record["vnc"]["host"], record["vnc"]["port"]) == b"RFB 003.008\n"

    assert (await action(api, vm["id"], "force-stop"))[0] == 202
    await wait_state(api, vm["id"], "stopped", timeout_s=30)
    assert (await action(api, vm["id"], "start"))[0] == 202
    await wait_state(api, vm["id"], "running", timeout_s=60)

    async with api.delete(f"/v1/vms/{vm['id']}") as response:
        assert response.status == 202
    await wait_gone(api, vm["id"], timeout_s=60)
    assert not vm_dir.exists()
    assert not domain_exists(f"lq-{name}")
