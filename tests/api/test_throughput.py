"""The gateway alone keeps up with the benchmark target: >= 100 creates/s with 10 clients.

Client and gateway share one event loop and the test's nats-server, so this is a floor; the
full pipeline (with a node agent) is measured by bench/provision.py.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from tests.support.api_gateway import Gateway

CREATES = 300
CLIENTS = 10


async def test_creates_per_second_with_ten_clients(gw: Gateway) -> None:
    await gw.heartbeat("node-a", vcpus=4096, memory_mib=1 << 22)
    await gw.heartbeat("node-b", vcpus=4096, memory_mib=1 << 22)
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
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    elapsed = time.perf_counter() - began
    rate = CREATES / elapsed
    quantiles = statistics.quantiles(latencies, n=100)
    print(f"\n{CREATES} creates, {CLIENTS} clients: {rate:.0f} creates/s, "
          f"p50 {quantiles[49] * 1000:.1f} ms, p99 {quantiles[98] * 1000:.1f} ms")
    assert len(await gw.commands("node-a")) + len(await gw.commands("node-b")) == CREATES
    async with gw.client.get("/v1/vms", headers=gw.auth) as response:
        assert len((await response.json())["items"]) == CREATES
    assert rate >= 100
