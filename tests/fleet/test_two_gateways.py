"""Two gateways (real ``lq-api`` processes) on one NATS, behind one port (a round-robin load
balancer on loopback, as a Kubernetes Service): placement never over-commits a node under
concurrent creates through both; SSE resume, console tickets and idempotency keys work across
them."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest

from limiquantix.common import subjects
from limiquantix.common.allocations import allocation_decoder
from limiquantix.common.model import utcnow
from limiquantix.common.vm_store import VmStore
from limiquantix.common.vms import VmRecord, VmState, VncEndpoint
from limiquantix.local.stack import Stack
from tests.support.flows import FAST_ENV, sse_events, unique_name, wait_state
from tests.support.gateways import start_gateway
from tests.support.load_balancer import balanced
from tests.support.tcp_servers import tcp_server

pytestmark = pytest.mark.stack

NODE_ENV = {"LQ_NODE_VCPUS": "2", "LQ_NODE_MEMORY_MIB": "2048"}  # 8 vCPUs, 2048 MiB to place
VM = {"vcpus": 1, "memory_mib": 256, "disk_gib": 1}  # 8 fit a node, by either figure
PER_NODE = 8


@contextlib.asynccontextmanager
async def two_gateways(root: Path, nodes: tuple[str, ...]) -> AsyncIterator[tuple[Stack, str]]:
    """A stack (its own gateway ``api``), a second gateway ``api-2``, and the stack's URL."""
    async with Stack(root, nodes=(), with_image_library=False, extra_env=FAST_ENV) as stack:
        await start_gateway(stack, "api-2")
        for node in nodes:
            await stack.start_node(node, **NODE_ENV)
        yield stack, stack.api_url


def second_url(stack: Stack) -> str:
    env = stack.services["api-2"].env
    return f"http://127.0.0.1:{env['LQ_API_PORT']}"


async def post_vm(http: aiohttp.ClientSession, url: str, body: dict[str, Any],
                  headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{url}/v1/vms", json=body, headers=headers) as response:
        return response.status, dict(await response.json(content_type=None))


async def test_concurrent_creates_through_two_gateways_never_over_commit_a_node(
        tmp_path: Path) -> None:
    nodes = ("n1", "n2", "n3")
    async with two_gateways(tmp_path / "s", nodes) as (stack, url_a), \
            aiohttp.ClientSession(headers=stack.headers()) as http:
        url_b = second_url(stack)
        wanted = 2 * PER_NODE * len(nodes)  # twice what fits
        bodies = [{**VM, "name": f"cc-{i}"} for i in range(wanted)]
        results = await asyncio.gather(*(
            post_vm(http, url_a if i % 2 else url_b, body) for i, body in enumerate(bodies)))
        accepted = [body for status, body in results if status == 202]
        refused = [body for status, body in results if status != 202]
        assert {body["code"] for body in refused} <= {"no_capacity"}, refused[:3]
        per_node = {node: sum(1 for vm in accepted if vm["node"] == node) for node in nodes}
        assert all(count <= PER_NODE for count in per_node.values()), per_node
        assert len(accepted) == PER_NODE * len(nodes), per_node  # and all the room is used

        for vm in accepted:  # every accepted VM runs, once
            await wait_state(on(http, url_a), vm["id"], "running")
        async with http.get(f"{url_b}/v1/vms?limit=1000") as response:
            listed = (await response.json())["items"]
        assert sorted(vm["id"] for vm in listed) == sorted(vm["id"] for vm in accepted)
        nc = await nats.connect(**stack.nats_options())
        try:
            kv = await nc.jetstream().key_value(subjects.ALLOCATIONS_BUCKET)
            for node in nodes:
                record = allocation_decoder.decode((await kv.get(node)).value or b"")
                assert record.vcpus <= 8 and record.memory_mib <= 2048
                assert sorted(record.vms) == sorted(v["id"] for v in accepted
                                                    if v["node"] == node)
        finally:
            await nc.close()


async def test_deleted_vms_give_their_room_back_through_the_other_gateway(
        tmp_path: Path) -> None:
    async with two_gateways(tmp_path / "s", ("n1",)) as (stack, url_a), \
            aiohttp.ClientSession(headers=stack.headers()) as http:
        url_b = second_url(stack)
        made = [await post_vm(http, url_a, {**VM, "name": f"full-{i}"}) for i in range(PER_NODE)]
        assert [status for status, _ in made] == [202] * PER_NODE
        status, problem = await post_vm(http, url_b, {**VM, "name": "one-too-many"})
        assert status == 409 and problem["code"] == "no_capacity"
        for _, vm in made:
            await wait_state(on(http, url_a), vm["id"], "running")
        async with http.delete(f"{url_a}/v1/vms/{made[0][1]['id']}") as response:
            assert response.status == 202
        # The node removes the record; gateway B's view sees it and the share is released.
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            status, body = await post_vm(http, url_b, {**VM, "name": "room-again"})
            if status == 202:
                break
            assert body["code"] == "no_capacity"
            assert asyncio.get_running_loop().time() < deadline, "the room never came back"
            await asyncio.sleep(0.1)


async def test_gateways_behind_one_port_share_idempotency_keys(tmp_path: Path) -> None:
    async with two_gateways(tmp_path / "s", ("n1",)) as (stack, url_a), \
            balanced([url_a, second_url(stack)]) as lb, \
            aiohttp.ClientSession(headers=stack.headers(),
                                  connector=aiohttp.TCPConnector(force_close=True)) as http:
        body = {**VM, "name": unique_name("idem")}
        key = {"Idempotency-Key": f"order-{uuid.uuid4().hex}"}
        results = await asyncio.gather(*(post_vm(http, lb.url, body, key) for _ in range(6)))
        assert {status for status, _ in results} == {202}, results
        assert len({vm["id"] for _, vm in results}) == 1
        assert min(lb.connections) >= 3  # both gateways answered some of them
        async with http.get(f"{lb.url}/v1/vms") as response:
            assert len((await response.json())["items"]) == 1


async def test_an_event_stream_resumes_on_the_other_gateway_without_gaps(
        tmp_path: Path) -> None:
    async with two_gateways(tmp_path / "s", ("n1",)) as (stack, url_a), \
            aiohttp.ClientSession(headers=stack.headers()) as http:
        url_b = second_url(stack)
        first = await post_vm(http, url_a, {**VM, "name": unique_name("sse")})
        vm_id = first[1]["id"]
        await wait_state(on(http, url_a), vm_id, "running")
        # Everything about the VM so far, from gateway A, from the stream's start.
        seen: list[tuple[int, str]] = []
        async for event_id, kind, data in sse_on(http, url_a, f"?vm={vm_id}&since=3600"):
            seen.append((int(event_id), data.get("state", kind)))
            if data.get("state") == "running":
                break
        half = len(seen) // 2
        resume_after = seen[half - 1][0]
        # Gateway B, resumed after an event in the middle: exactly the rest, in order.
        rest: list[tuple[int, str]] = []
        async for event_id, kind, data in sse_on(http, url_b, f"?vm={vm_id}",
                                                 {"Last-Event-ID": str(resume_after)}):
            rest.append((int(event_id), data.get("state", kind)))
            if data.get("state") == "running":
                break
        assert rest == seen[half:], (seen, rest)


def sse_on(http: aiohttp.ClientSession, url: str, query: str,
           headers: dict[str, str] | None = None) -> AsyncIterator[tuple[str, str, dict[str, Any]]]:
    return sse_events(on(http, url), query, headers)  # type: ignore[arg-type]


class on:  # lower-case: reads as "on(http, url)" at the call site
    """A session bound to one gateway's base URL, for the flows helpers (relative paths)."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self._http = http
        self._base = base

    def get(self, path: str, **kwargs: Any) -> Any:
        return self._http.get(self._base + path, **kwargs)


async def test_a_console_ticket_from_one_gateway_opens_on_the_other(tmp_path: Path) -> None:
    """The ticket lives in the shared ``lq_console_tokens`` bucket, not in a gateway's memory;
    the VNC side is a loopback server that greets like QEMU's."""
    greeting = b"RFB 003.008\n"
    async with tcp_server("greet", greeting=greeting) as vnc, \
            two_gateways(tmp_path / "s", ()) as (stack, url_a), \
            aiohttp.ClientSession(headers=stack.headers()) as http:
        url_b = second_url(stack)
        nc = await nats.connect(**stack.nats_options())
        try:
            js = nc.jetstream()
            store = VmStore(await js.key_value(subjects.VMS_BUCKET),
                            await js.key_value(subjects.VM_NAMES_BUCKET))
            now = utcnow()
            # As a node agent leaves a running VM (no node named: none runs in this test).
            record = VmRecord(id=str(uuid.uuid4()), name=unique_name("con"),
                              state=VmState.RUNNING, node="", image="none", vcpus=1,
                              memory_mib=64, disk_gib=1, created_at=now, updated_at=now,
                              vnc=VncEndpoint(host="127.0.0.1", port=vnc.port))
            await store.create(record)
        finally:
            await nc.close()
        await wait_state(on(http, url_a), record.id, "running")
        async with http.post(f"{url_a}/v1/vms/{record.id}/console") as response:
            ticket = await response.json()
            assert response.status == 201, ticket
        async with aiohttp.ClientSession() as plain, \
                plain.ws_connect(url_b + ticket["url"], origin=url_b) as ws:
            message = await asyncio.wait_for(ws.receive(), 10)
            assert message.type == aiohttp.WSMsgType.BINARY and message.data == greeting
        # Single use, whichever gateway is asked next.
        async with aiohttp.ClientSession() as plain:
            with pytest.raises(aiohttp.WSServerHandshakeError):
                async with plain.ws_connect(url_a + ticket["url"], origin=url_a):
                    pass
