"""Issue 15's resize, extra disks and ISO media seen from inside a real Debian guest, through
the HTTP API: one VM for every assertion (TCG boots are slow).

ready -> stop -> PATCH 2 vCPUs, 1536 MiB, disk 4 -> 6 GiB -> start -> ``nproc`` is 2,
/proc/meminfo has the memory, the root file system grew (cloud-init's growpart and resizefs at
boot) -> an extra 2 GiB disk appears in ``lsblk`` while the guest runs and goes away after its
delete -> an ISO uploaded to the library shows up as a CD-ROM with its label and files, and is
gone after the eject -> the disk grown to 8 GiB while the guest runs: its root file system
follows at once (cloud-init's growpart and resizefs run through the guest agent). Run under the
machine-wide lock:
``flock /tmp/lq-guest.lock .venv/bin/python -m pytest tests/guest/test_day2_devices_guest.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.flows import action, unique_name, wait_image_state, wait_state
from tests.support.guest_vm import GuestStack, wait_ready
from tests.support.iso import make_iso
from tests.support.waits import eventually

pytestmark = [pytest.mark.guest, pytest.mark.stack, pytest.mark.timeout(2400),
              pytest.mark.asyncio(loop_scope="module")]

GIB = 1 << 30
ISO_LABEL = "LQTOOLS"
FIND_ISO = ("for d in /dev/sr*; do echo \"$d $(sudo blkid -o value -s LABEL $d)\"; done")


async def call(api: aiohttp.ClientSession, method: str, path: str,
               body: Any = None) -> tuple[int, Any]:
    async with api.request(method, path, json=body) as response:
        return response.status, await response.json(content_type=None)


async def record_of(api: aiohttp.ClientSession, vm_id: str) -> dict[str, Any]:
    status, record = await call(api, "GET", f"/v1/vms/{vm_id}")
    assert status == 200, record
    return dict(record)


async def upload_iso(api: aiohttp.ClientSession, path: Path) -> str:
    status, image = await call(api, "POST", "/v1/images", {"name": "lq-tools"})
    assert status == 201, image
    async with api.put(f"/v1/images/{image['id']}/file", data=path.read_bytes(),
                       headers={"Content-Type": "application/octet-stream"}) as response:
        assert response.status in (200, 201, 202), await response.text()
    await wait_image_state(api, image["id"], "active", timeout_s=120)
    return str(image["id"])


async def test_resize_extra_disk_and_iso_inside_a_real_guest(guest_stack: GuestStack) -> None:
    api = guest_stack.api
    vm_id = (await guest_stack.create_vm(unique_name("day2")))["id"]
    iso = make_iso(guest_stack.dir / "tools.iso", {"hello.txt": b"from the library\n"}, ISO_LABEL)
    ssh = await guest_stack.ssh_to(await wait_ready(api, vm_id))

    async def out(command: str) -> str:
        code, stdout, stderr = await ssh(command)
        assert code == 0, f"{command}: {stderr}"
        return stdout.strip()

    async def mem_total_kib() -> int:
        line = next(line for line in (await out("cat /proc/meminfo")).splitlines()
                    if line.startswith("MemTotal:"))
        return int(line.split()[1])

    async def root_bytes() -> int:
        return int((await out("df -B1 --output=size / | tail -1")).strip())

    assert await out("nproc") == "1"
    memory_before, root_before = await mem_total_kib(), await root_bytes()

    # Resize while stopped: applied at the next start.
    assert (await action(api, vm_id, "stop"))[0] == 202
    await wait_state(api, vm_id, "stopped", timeout_s=360)
    status, resized = await call(api, "PATCH", f"/v1/vms/{vm_id}",
                                 {"vcpus": 2, "memory_mib": 1536, "disk_gib": 6})
    assert status == 202, resized
    assert (resized["vcpus"], resized["memory_mib"], resized["disk_gib"]) == (2, 1536, 6)
    assert (await action(api, vm_id, "start"))[0] == 202
    await wait_ready(api, vm_id)
    assert await out("nproc") == "2"
    memory_after = await mem_total_kib()
    # MemTotal is RAM less what the kernel keeps: within 15 % of 1536 MiB, 512 MiB more.
    assert 0.85 * 1536 * 1024 < memory_after <= 1536 * 1024, memory_after
    assert memory_after - memory_before > 450 * 1024
    assert int(await out("lsblk -b -d -n -o SIZE /dev/vda")) == 6 * GIB
    root_after = await root_bytes()
    assert root_after - root_before > 1.5 * GIB, (root_before, root_after)  # growpart at boot

    # An extra disk while the guest runs: it appears, then goes.
    status, with_disk = await call(api, "POST", f"/v1/vms/{vm_id}/disks",
                                   {"name": "data", "size_gib": 2})
    assert status == 202, with_disk

    async def disks_of_size(size: int) -> list[str]:
        lines = (await out("lsblk -b -d -n -o NAME,SIZE,TYPE")).splitlines()
        return [f[0] for f in map(str.split, lines) if f[2] == "disk" and int(f[1]) == size]

    async def attached() -> bool:
        states = [d["state"] for d in (await record_of(api, vm_id)).get("disks", [])]
        return states == ["attached"]
    await eventually(attached, timeout_s=120, interval_s=1, what="the extra disk attached")
    (extra,) = await eventually(lambda: disks_of_size(2 * GIB), timeout_s=120, interval_s=1,
                                what="a 2 GiB disk in lsblk")
    assert extra.startswith("sd")
    status, _ = await call(api, "DELETE", f"/v1/vms/{vm_id}/disks/data")
    assert status == 202

    async def disk_gone() -> bool:
        return not await disks_of_size(2 * GIB)
    await eventually(disk_gone, timeout_s=120, interval_s=1, what="the extra disk gone from lsblk")
    assert not (await record_of(api, vm_id)).get("disks")

    # An ISO from the library in the media drive: a CD-ROM with its label and files.
    image_id = await upload_iso(api, iso)
    status, with_media = await call(api, "POST", f"/v1/vms/{vm_id}/media", {"image": image_id})
    assert status == 202, with_media

    async def iso_device() -> str:
        for line in (await out(FIND_ISO)).splitlines():
            device, *label = line.split()
            if label == [ISO_LABEL]:
                return device
        return ""
    device = await eventually(iso_device, timeout_s=120, interval_s=1, what="the ISO as a CD-ROM")
    assert await out(f"sudo mount -o ro {device} /mnt && cat /mnt/hello.txt; "
                     "sudo umount /mnt") == "from the library"
    seed = [line for line in (await out(FIND_ISO)).splitlines() if line.endswith("cidata")]
    assert seed and not seed[0].startswith(f"{device} ")  # not the seed's drive
    assert (await record_of(api, vm_id))["media"]["state"] in ("inserting", "inserted")
    status, _ = await call(api, "DELETE", f"/v1/vms/{vm_id}/media")
    assert status == 202

    async def iso_gone() -> bool:
        return not await iso_device()
    await eventually(iso_gone, timeout_s=120, interval_s=1, what="the ISO ejected")

    # The disk grows while the guest runs; its agent grows the root file system at once.
    root_before = await root_bytes()
    status, _ = await call(api, "PATCH", f"/v1/vms/{vm_id}", {"disk_gib": 8})
    assert status == 202

    async def root_grew() -> bool:
        return await root_bytes() - root_before > 1.5 * GIB
    await eventually(root_grew, timeout_s=240, interval_s=1,
                     what="the root file system grown while running")
    assert int(await out("lsblk -b -d -n -o SIZE /dev/vda")) == 8 * GIB
