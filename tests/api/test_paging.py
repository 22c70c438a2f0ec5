"""Paged, filtered lists (``GET /v1/vms``, ``GET /v1/nodes``) against a real NATS; the typed
client follows the pages; VMs of an offline node are answered and filtered as ``unknown``."""

from __future__ import annotations

import asyncio
from typing import Any

from limiquantix.api import paging
from limiquantix.api.paging import DEFAULT_LIMIT
from limiquantix.client.aio import AsyncClient
from limiquantix.client.sync import Client
from limiquantix.common.vms import VmState
from tests.api.test_vms_http import set_state
from tests.support.api_gateway import Gateway

BODY = {"image": "/images/base.qcow2", "vcpus": 1, "memory_mib": 64}


async def get(gw: Gateway, path: str) -> tuple[int, Any]:
    async with gw.client.get(path, headers=gw.auth) as response:
        return response.status, await response.json(content_type=None)


async def make(gw: Gateway, count: int, prefix: str = "vm", **extra: Any
               ) -> list[dict[str, Any]]:
    made = []
    for i in range(count):  # one by one: creation order is the list order
        body = {**BODY, "name": f"{prefix}-{i}", **extra}
        async with gw.client.post("/v1/vms", json=body, headers=gw.auth) as response:
            assert response.status == 202, await response.text()
            made.append(await response.json())
    return made


async def pages(gw: Gateway, query: str) -> list[list[dict[str, Any]]]:
    found, cursor = [], None
    while True:
        sep = "&" if query else ""
        status, body = await get(gw, f"/v1/vms?{query}{sep}cursor={cursor}" if cursor
                                 else f"/v1/vms?{query}")
        assert status == 200, body
        found.append(body["items"])
        cursor = body.get("next_cursor")
        if cursor is None:
            return found


async def test_pages_cover_every_vm_once_in_creation_order(gw: Gateway) -> None:
    await gw.heartbeat("node-a", vcpus=64)
    made = await make(gw, 23)
    got = await pages(gw, "limit=10")
    assert [len(page) for page in got] == [10, 10, 3]
    assert [vm["id"] for page in got for vm in page] == [vm["id"] for vm in made]
    status, everything = await get(gw, "/v1/vms")  # no limit: today's clients see them all
    assert status == 200 and len(everything["items"]) == 23 and everything["next_cursor"] is None
    assert DEFAULT_LIMIT >= 1000


async def test_a_cursor_stays_valid_while_vms_come_and_go(gw: Gateway) -> None:
    await gw.heartbeat("node-a", vcpus=64)
    made = await make(gw, 6)
    _, first = await get(gw, "/v1/vms?limit=3")
    async with gw.client.delete(f"/v1/vms/{made[3]['id']}?force=false",
                                headers=gw.auth) as response:
        assert response.status == 202
    newer = await make(gw, 1, prefix="late")
    _, second = await get(gw, f"/v1/vms?limit=10&cursor={first['next_cursor']}")
    ids = [vm["id"] for vm in second["items"]]
    assert ids == [vm["id"] for vm in made[3:]] + [newer[0]["id"]]  # deleting: still listed


async def test_filters_by_node_state_and_label(gw: Gateway) -> None:
    await gw.heartbeat("node-a", vcpus=64)
    await gw.heartbeat("node-b", vcpus=64)
    web = await make(gw, 3, prefix="web", node="node-a", labels={"team": "web", "tier": "1"})
    db = await make(gw, 2, prefix="db", node="node-b", labels={"team": "db"})
    _, on_b = await get(gw, "/v1/vms?node=node-b")
    assert [vm["id"] for vm in on_b["items"]] == [vm["id"] for vm in db]
    _, team_web = await get(gw, "/v1/vms?label=team=web&label=tier")
    assert [vm["id"] for vm in team_web["items"]] == [vm["id"] for vm in web]
    assert team_web["items"][0]["labels"] == {"team": "web", "tier": "1"}
    _, none = await get(gw, "/v1/vms?label=team=web&node=node-b")
    assert none["items"] == []
    _, pending = await get(gw, "/v1/vms?state=pending&limit=2")
    assert len(pending["items"]) == 2 and pending["next_cursor"]


async def test_vms_of_an_offline_node_are_listed_and_filtered_as_unknown(gw: Gateway) -> None:
    await gw.heartbeat("node-a", vcpus=64)
    await gw.heartbeat("node-b", vcpus=64)
    on_a = await make(gw, 1, prefix="a", node="node-a")
    on_b = await make(gw, 1, prefix="b", node="node-b")
    for vm in (*on_a, *on_b):
        await set_state(gw, vm["id"], VmState.RUNNING)
    # node-b stops heartbeating; node-a keeps beating (the bucket TTL is 3 beats).
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        await gw.heartbeat("node-a", vcpus=64)
        _, unknown = await get(gw, "/v1/vms?state=unknown")
        if [vm["id"] for vm in unknown["items"]] == [on_b[0]["id"]]:
            break
        assert asyncio.get_running_loop().time() < deadline, unknown
        await asyncio.sleep(0.2)
    _, running = await get(gw, "/v1/vms?state=running")
    assert [vm["id"] for vm in running["items"]] == [on_a[0]["id"]]
    _, nodes = await get(gw, "/v1/nodes")
    assert {n["id"]: n["status"] for n in nodes["items"]} == {"node-a": "online",
                                                              "node-b": "offline"}


async def test_bad_limits_and_cursors_are_422_with_a_code(gw: Gateway) -> None:
    for query, code in (("limit=0", "invalid_request"), ("limit=5000", "invalid_request"),
                        ("limit=x", "invalid_request"), ("cursor=%%%", "invalid_cursor"),
                        ("label==x", "invalid_request"), ("state=sleepy", "invalid_request")):
        status, problem = await get(gw, f"/v1/vms?{query}")
        assert status == 422 and problem["code"] == code and problem["hint"], (query, problem)
    status, problem = await get(gw, "/v1/nodes?cursor=nope!")
    assert status == 422 and problem["code"] == "invalid_cursor"


async def test_node_pages(gw: Gateway) -> None:
    for i in range(7):
        await gw.heartbeat(f"node-{i}")
    _, first = await get(gw, "/v1/nodes?limit=3")
    assert [n["id"] for n in first["items"]] == ["node-0", "node-1", "node-2"]
    _, second = await get(gw, f"/v1/nodes?limit=3&cursor={first['next_cursor']}")
    assert [n["id"] for n in second["items"]] == ["node-3", "node-4", "node-5"]
    _, last = await get(gw, f"/v1/nodes?limit=3&cursor={second['next_cursor']}")
    assert [n["id"] for n in last["items"]] == ["node-6"] and last["next_cursor"] is None
    status, one = await get(gw, "/v1/nodes/node-4")
    assert status == 200 and one["id"] == "node-4"


async def test_both_clients_follow_every_page(gw: Gateway, monkeypatch: Any) -> None:
    await gw.heartbeat("node-a", vcpus=64)
    await gw.heartbeat("node-b", vcpus=64)
    await make(gw, 5, labels={"app": "x"})
    await make(gw, 1, prefix="other")
    monkeypatch.setattr(paging, "DEFAULT_LIMIT", 2)  # the server's pages, not the client's
    url = str(gw.client.make_url("/")).rstrip("/")
    async with AsyncClient(url, token=gw.token) as client:
        assert len(await client.vms.list(label=["app=x"])) == 5
        assert len(await client.vms.list()) == 6
        assert [n.id for n in await client.nodes.list()] == ["node-a", "node-b"]
    sync = Client(url, token=gw.token)
    names = await asyncio.to_thread(lambda: [vm.name for vm in sync.vms.list(label=["app"])])
    assert names == [f"vm-{i}" for i in range(5)]
