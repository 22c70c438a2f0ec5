"""Placement across two real node agents (separate processes, separate test drivers)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from limiquantix.local.stack import Stack
from tests.support.disks import make_qcow2
from tests.support.flows import FAST_ENV, create_vm, unique_name, wait_state

pytestmark = pytest.mark.stack


async def test_vms_go_to_the_node_with_most_free_memory_and_explicit_node_wins(
        tmp_path: Path) -> None:
    image = make_qcow2(tmp_path / "base.qcow2")
    env = {**FAST_ENV, "LQ_NODE_VCPUS": "4"}
    async with Stack(tmp_path / "s", nodes=(), extra_env=env) as stack:
        await stack.start_node("small", LQ_NODE_MEMORY_MIB="2048")
        await stack.start_node("big", LQ_NODE_MEMORY_MIB="4096")
        async with aiohttp.ClientSession(base_url=stack.api_url,
                                         headers=stack.headers()) as api:
            async with api.get("/v1/nodes") as response:
                nodes = await response.json()
            items = nodes["items"] if isinstance(nodes, dict) else nodes
            assert sorted(n["id"] for n in items) == ["big", "small"]

            first = await create_vm(api, name=unique_name(), image=str(image), memory_mib=1536,
                                    disk_gib=1)
            assert first["node"] == "big"  # 4096-1536 left vs 2048-1536
            second = await create_vm(api, name=unique_name(), image=str(image),
                                     memory_mib=1536, disk_gib=1)
            assert second["node"] == "big"  # 2560-1536 = 1024 left vs 2048-1536 = 512
            third = await create_vm(api, name=unique_name(), image=str(image),
                                    memory_mib=1536, disk_gib=1)
            assert third["node"] == "small"  # big (1024 free) no longer fits
            pinned = await create_vm(api, name=unique_name(), image=str(image), memory_mib=256,
                                     disk_gib=1, node="small")
            assert pinned["node"] == "small"
            for vm in (first, second, third, pinned):
                await wait_state(api, vm["id"], "running")

            async with api.post("/v1/vms", json={"name": unique_name(), "image": str(image),
                                                 "memory_mib": 8192}) as response:
                problem = await response.json()
                assert response.status == 409 and problem["code"] == "no_capacity"
                assert problem["detail"]
            async with api.get("/v1/nodes/small") as response:
                small = await response.json()
            assert small["allocated_memory_mib"] == 1536 + 256
