"""``lq vm resize``, ``lq vm disk ...`` and ``lq vm media ...`` (and the typed client under them)
against the real stack (NATS, image library, node agent on libvirt's test driver, API), with
the API as the oracle. The running-domain side is in tests/e2e/test_day2_devices_qemu.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limiquantix.client import Client, Conflict
from limiquantix.client.devices import disk_attached, media_empty
from limiquantix.common.vms import CreateVmRequest
from limiquantix.local.stack import Stack
from tests.cli.test_cli_on_stack import api_get, one_error_line
from tests.support.cli import Lq
from tests.support.disks import make_qcow2
from tests.support.flows import unique_name
from tests.support.iso import make_iso

pytestmark = pytest.mark.stack


async def test_resize_disks_and_media_with_lq(lq: Lq, stack: Stack, tmp_path: Path) -> None:
    name = unique_name("dev")
    created = await lq("vm", "create", name, "--image", str(make_qcow2(tmp_path / "b.qcow2")),
                       "--memory", "256M", "--disk", "1G", "--wait", "running")
    assert created.code == 0, created.err

    # Running without headroom: told to stop first, in one error line with the hint.
    refused = await lq("vm", "resize", name, "--vcpus", "2")
    assert refused.code == 1 and "(resize_needs_stop)" in one_error_line(refused.err)
    assert "stop" in refused.err.lower()
    assert (await lq("vm", "stop", name, "--wait")).code == 0
    resized = await lq("vm", "resize", name, "--vcpus", "2", "--memory", "512M", "--disk", "2G",
                       "--max-vcpus", "4", "--wait")
    assert resized.code == 0, resized.err
    assert "2 vCPUs (max 4), 512 MiB" in resized.out and "at the next start" in resized.out
    record = api_get(stack, f"/v1/vms/{name}")[1]
    assert (record["vcpus"], record["memory_mib"], record["disk_gib"], record["max_vcpus"]) == (
        2, 512, 2, 4)
    shrink = await lq("vm", "resize", name, "--disk", "1G")
    assert shrink.code == 1 and "(disk_shrink_refused)" in one_error_line(shrink.err)

    added = await lq("vm", "disk", "add", name, "data", "3G", "--wait")
    assert added.code == 0, added.err
    assert f"{name}: disk data (3 GiB, scsi sdf) attached" in added.out
    listed = json.loads((await lq("vm", "disk", "list", name, "--json")).out)
    assert [(d["name"], d["size_gib"], d["state"]) for d in listed] == [("data", 3, "attached")]
    assert listed[0]["path"].endswith(f"disk-{listed[0]['id']}.qcow2")
    table = (await lq("vm", "disk", "list", name)).out.splitlines()
    assert table[0].split()[:5] == ["NAME", "SIZE", "TARGET", "BUS", "STATE"]
    removed = await lq("vm", "disk", "remove", name, "data", "--wait")
    assert removed.code == 0, removed.err
    assert api_get(stack, f"/v1/vms/{name}")[1].get("disks", []) == []

    iso = make_iso(tmp_path / "tools.iso")
    uploaded = await lq("image", "upload", str(iso), "--name", "tools")
    assert uploaded.code == 0, uploaded.err
    not_iso = await lq("image", "upload", str(make_qcow2(tmp_path / "q.qcow2")), "--name", "q")
    assert not_iso.code == 0, not_iso.err
    refused = await lq("vm", "media", "insert", name, "q")
    assert refused.code == 1 and "(not_an_iso)" in one_error_line(refused.err)
    inserted = await lq("vm", "media", "insert", name, "tools", "--wait")
    assert inserted.code == 0, inserted.err
    assert f"{name}: tools in the media drive" in inserted.out
    media = api_get(stack, f"/v1/vms/{name}")[1]["media"]
    assert (media["name"], media["state"], media["target"]) == ("tools", "inserted", "sde")
    ejected = await lq("vm", "media", "eject", name, "--wait")
    assert ejected.code == 0, ejected.err
    assert api_get(stack, f"/v1/vms/{name}")[1].get("media") is None, ejected.out


async def test_the_typed_client_resizes_and_adds_disks(stack: Stack, tmp_path: Path) -> None:
    client = Client(stack.api_url, token=stack.api_token)
    vm = client.vms.create(CreateVmRequest(
        name=unique_name("cli"), image=str(make_qcow2(tmp_path / "b.qcow2")), memory_mib=128,
        disk_gib=1, max_vcpus=2))
    client.vms.wait_for(vm.id, "running", timeout_s=60)
    with pytest.raises(Conflict) as refused:
        client.devices.resize(vm.id, memory_mib=256)  # no memory headroom
    assert refused.value.code == "resize_needs_stop"
    grown = client.devices.resize(vm.id, vcpus=2)  # within max_vcpus: live
    assert grown.vcpus == 2
    record = client.devices.add_disk(vm.id, "scratch", 1)
    assert [d.state for d in record.disks] == ["attaching"]
    done = client.devices.wait(vm.id, disk_attached("scratch"), timeout_s=60)
    assert done.disks[0].target == "sdf"
    assert client.devices.wait(vm.id, media_empty).media is None
