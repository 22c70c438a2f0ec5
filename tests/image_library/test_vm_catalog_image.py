"""VMs created from a catalog image on a real stack: the node fetches it once, then reuses it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from limiquantix.local.stack import Stack
from limiquantix.node_agent.images.cache import qcow2_backing_file
from tests.support.counting_proxy import start_proxy
from tests.support.disks import sha256_file
from tests.support.flows import create_vm, unique_name, wait_gone, wait_state
from tests.support.flows import wait_image_state as wait_image
from tests.support.origin import ALLOW_LOCAL_ORIGINS, Origin

pytestmark = pytest.mark.stack


async def test_three_vms_on_one_uncached_catalog_image_cause_one_download(
    tmp_path: Path, origin: Origin, disk: Path,
) -> None:
    stack = Stack(tmp_path / "stack", nodes=(), extra_env={"LQ_HEARTBEAT_INTERVAL_S": "1",
                                                               **ALLOW_LOCAL_ORIGINS})
    async with stack, aiohttp.ClientSession(base_url=stack.api_url,
                                            headers=stack.headers()) as api:
        async with api.post("/v1/images", json={
            "catalog_id": "debian-12", "source_url": origin.file_url("disk.qcow2"),
        }) as response:
            assert response.status == 202
        await wait_image(api, "debian-12", "active")
        async for proxy in start_proxy(stack.image_library_url):
            await stack.start_node("node-a", LQ_IMAGE_LIBRARY_URL=proxy.url, LQ_NODE_VCPUS="16")
            vms = await asyncio.gather(*(
                create_vm(api, name=unique_name(), image="debian-12", memory_mib=256, disk_gib=3)
                for _ in range(3)
            ))
            for vm in vms:
                await wait_state(api, vm["id"], "running", "ready", timeout_s=60)
            assert proxy.hits["/images/debian-12/file"] == 1
        cache = stack.node_data_dir("node-a") / "cloud-images"
        cached = cache / f"{sha256_file(disk)}.qcow2"
        assert sha256_file(cached) == sha256_file(disk)
        for vm in vms:
            overlay = stack.node_data_dir("node-a") / "images" / vm["id"] / "disk.qcow2"
            assert qcow2_backing_file(overlay) == cached
        async with api.delete("/v1/images/debian-12") as response:
            assert response.status == 409
            assert (await response.json(content_type=None))["code"] == "image_in_use"
        for vm in vms:
            async with api.delete(f"/v1/vms/{vm['id']}") as response:
                assert response.status in (200, 202)
        for vm in vms:
            await wait_gone(api, vm["id"])
        async with api.delete("/v1/images/debian-12") as response:
            assert response.status == 200
