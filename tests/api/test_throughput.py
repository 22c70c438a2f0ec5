"""Ten clients creating at once through the gateway alone: every create accepted, queued once
and listed. The rate is printed, not asserted (speed goals live in bench/provision.py, which
measures the full pipeline against its target of >= 100 creates/s).
"""

from __future__ import annotations

import asyncio
import statistics
import time

from tests.support.api_gateway import Gateway

CREATES = 300
CLIENTS = 10


async def _heartbeats(gw: Gateway) -> None:
    """The two nodes stay online however long the run takes on a busy machine (3 s TTL)."""
    while True:
        for node in ("node-a", "node-b"):
            await gw.heartbeat(node, vcpus=4096, memory_mib=1 << 22)
        await asyncio.sleep(0.5)


async def test_three_hundred_creates_from_ten_clients_are_all_accepted_queued_and_listed(
        gw: Gateway) -> None:
    await gw.heartbeat("node-a", vcpus=4096, memory_mib=1 << 22)
    await gw.heartbeat("node-b", vcpus=4096, memory_mib=1 << 22)
    beating = asyncio.create_task(_heartbeats(gw))
    latencies: list[float] = []
    counter = iter(range(CREATES))

    async def client() -> None:
        for i in counter:
            body = {"name": f"bench-{i}", "image": "/i.qcow2", "memory_mib": 64}
            start = time.perf_counter()
            async with gw.client.post("/v1/vms", json=body, headers=gw.auth) as response:
                assert response.status == 202, await response.text()
                await response.read()
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    try:
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
    finally:
        beating.cancel()
    elapsed = time.perf_counter() - began
    rate = CREATES / elapsed
    quantiles = statistics.quantiles(latencies, n=100)
    print(f"\n{CREATES} creates, {CLIENTS} clients: {rate:.0f} creates/s, "
          f"p50 {quantiles[49] * 1000:.1f} ms, p99 {quantiles[98] * 1000:.1f} ms")
    assert len(await gw.commands("node-a")) + len(await gw.commands("node-b")) == CREATES
    async with gw.client.get("/v1/vms", headers=gw.auth) as response:
        assert len((await response.json())["items"]) == CREATES
