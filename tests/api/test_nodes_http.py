"""GET /v1/nodes: online nodes from heartbeats; offline ones still named by VMs."""

from __future__ import annotations

from typing import Any

from limiquantix.common import subjects
from tests.support.api_gateway import Gateway
from tests.support.waits import eventually


async def nodes(gw: Gateway) -> list[dict[str, Any]]:
    async with gw.client.get("/v1/nodes", headers=gw.auth) as response:
        assert response.status == 200
        return list((await response.json())["items"])


async def test_nodes_show_capacity_allocations_and_vms(gw: Gateway) -> None:
    await gw.heartbeat("node-a", vcpus=8, memory_mib=8192, allocated_vcpus=2,
                       allocated_memory_mib=2048, vm_ids=("old-vm",))
    async with gw.client.post("/v1/vms", headers=gw.auth, json={
            "name": "x", "image": "/i.qcow2", "vcpus": 1, "memory_mib": 1024}) as response:
        vm = await response.json()
    (node,) = await nodes(gw)
    assert node["id"] == "node-a" and node["status"] == "online"
    assert (node["vcpus"], node["memory_mib"]) == (8, 8192)
    # What the VM records on the node take (the heartbeat's own figures may lag behind).
    assert (node["allocated_vcpus"], node["allocated_memory_mib"]) == (1, 1024)
    assert (node["free_vcpus"], node["free_memory_mib"]) == (7, 7168)
    assert node["vm_ids"] == [vm["id"]] and node["last_heartbeat"]
    async with gw.client.get("/v1/nodes/node-a", headers=gw.auth) as response:
        assert (await response.json())["id"] == "node-a"
    async with gw.client.get("/v1/nodes/nope", headers=gw.auth) as response:
        assert response.status == 404
        assert (await response.json())["code"] == "node_not_found"


async def test_a_node_gone_from_the_bucket_but_named_by_vms_is_offline(gw: Gateway) -> None:
    await gw.heartbeat("node-a")
    async with gw.client.post("/v1/vms", headers=gw.auth,
                              json={"name": "x", "image": "/i.qcow2"}) as response:
        assert response.status == 202
    kv = await (await gw.as_node("node-a")).jetstream().key_value(subjects.NODES_BUCKET)
    await kv.purge("node-a")  # as the node itself does when it stops

    async def offline() -> dict[str, Any] | None:
        (node,) = await nodes(gw)
        return node if node["status"] == "offline" else None

    node = await eventually(offline, what="node-a offline")
    assert node["id"] == "node-a"
    assert node["vm_count"] == 1


async def test_a_node_that_stops_heartbeating_goes_offline_after_the_ttl(gw: Gateway) -> None:
    """Bucket TTL = 3 heartbeats (3 s here); expiry sends watchers nothing, time decides."""
    await gw.heartbeat("node-a")
    await gw.heartbeat("node-b")
    assert [n["status"] for n in await nodes(gw)] == ["online", "online"]

    async def only_b_listed() -> bool:  # node-b keeps beating while node-a's entry ages
        await gw.heartbeat("node-b")
        return {n["id"]: n["status"] for n in await nodes(gw)} == {"node-b": "online"}

    await eventually(only_b_listed, timeout_s=10.0, interval_s=0.5,
                     what="node-a expired (and no VM names it)")
    async with gw.client.post("/v1/vms", headers=gw.auth,
                              json={"name": "x", "image": "/i.qcow2", "node": "node-a"}) as r:
        assert r.status == 422 and (await r.json())["code"] == "unknown_node"
