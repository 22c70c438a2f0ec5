"""Provisioning throughput and latency through the HTTP API (libvirt test driver).

    .venv/bin/python bench/provision.py [--vms 200] [--clients 10]

Starts the whole system (like ``lq-local``, test driver, one node), then N creates by C
concurrent HTTP clients, each waiting for its VM to run before creating the next.
Prints creates/s and p50/p99 of POST → ``running`` event (seen on the SSE
stream), next to a bare NATS request/reply on the same server measured in the same run (the
baseline). Then deletes everything. Targets (issue 2): ≥ 100 creates/s with 10 clients; p50
overhead (POST → running minus one bare request/reply) ≤ 50 ms. All traffic is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import nats
from nats.aio.msg import Msg

from limiquantix.common import subjects
from limiquantix.common.nats_auth import node_identity
from limiquantix.local.stack import Stack


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bare_request_reply(stack: Stack, count: int, clients: int) -> list[float]:
    """The baseline: the cheapest possible round trip through the same NATS server, on the
    path a gateway → node query takes (each side with its own identity)."""
    node = stack.initial_nodes[0]
    responder = await nats.connect(**stack.nats_options(node_identity(node)))
    nc = await nats.connect(**stack.nats_options())
    subject = subjects.node_rpc(node, "bench_echo")

    async def echo(msg: Msg) -> None:
        await msg.respond(msg.data)

    await responder.subscribe(subject, cb=echo)
    await responder.flush()
    latencies: list[float] = []

    async def client(n: int) -> None:
        for _ in range(n):
            start = time.perf_counter()
            await nc.request(subject, b"x" * 256, timeout=5)
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(client(count // clients) for _ in range(clients)))
    await nc.close()
    await responder.close()
    return latencies


async def provision(stack: Stack, image: Path, count: int, clients: int
                    ) -> tuple[float, list[float], list[str]]:
    """Each client creates a VM and waits for its ``running`` event before the next one
    (what ``lq vm create --wait running`` does), so latency is the pipeline's, not a backlog's."""
    waiting: dict[str, asyncio.Future[float]] = {}
    early: dict[str, float] = {}  # running seen before the POST's answer was read
    latencies: list[float] = []
    ids: list[str] = []
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)

    async with aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as http:
        async def watch() -> None:
            async with http.get("/v1/events", timeout=timeout) as response:
                data = ""
                async for raw in response.content:
                    line = raw.decode().rstrip("\r\n")
                    if line.startswith("data:"):
                        data += line[5:].strip()
                    elif not line and data:
                        event, data = json.loads(data), ""
                        if event.get("state") != "running":
                            continue
                        future = waiting.get(event["vm_id"])
                        if future is None:
                            early[event["vm_id"]] = time.perf_counter()
                        elif not future.done():
                            future.set_result(time.perf_counter())

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.3)  # the SSE consumer is in place before the first create
        remaining = [count]

        async def client() -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                body = {"name": f"b-{uuid.uuid4().hex[:12]}", "image": str(image),
                        "memory_mib": 64, "vcpus": 1, "disk_gib": 1}
                start = time.perf_counter()
                async with http.post("/v1/vms", json=body) as response:
                    record = await response.json()
                    assert response.status == 202, record
                vm_id = record["id"]
                ids.append(vm_id)
                if vm_id in early:
                    done = early.pop(vm_id)
                else:
                    waiting[vm_id] = asyncio.get_running_loop().create_future()
                    done = await asyncio.wait_for(waiting[vm_id], 60)
                latencies.append(done - start)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - began
        watcher.cancel()
        return elapsed, latencies, ids


async def delete_all(stack: Stack, ids: list[str], clients: int) -> float:
    async with aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as http:
        began = time.perf_counter()
        queue = list(ids)

        async def client() -> None:
            while queue:
                vm_id = queue.pop()
                async with http.delete(f"/v1/vms/{vm_id}") as response:
                    assert response.status == 202
        await asyncio.gather(*(client() for _ in range(clients)))
        while True:
            async with http.get("/v1/vms") as response:
                listed = await response.json()
            items = listed["items"] if isinstance(listed, dict) else listed
            if not items:
                return time.perf_counter() - began
            await asyncio.sleep(0.05)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", type=int, default=200)
    parser.add_argument("--clients", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lq-bench-") as tmp:
        root = Path(tmp)
        image = root / "base.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
        env = {"LQ_LOG_LEVEL": "warning", "LQ_NODE_VCPUS": "100000",
               "LQ_NODE_MEMORY_MIB": "100000000", "LQ_HOST_IMAGE_DIRS": str(root)}
        async with Stack(root / "stack", extra_env=env) as stack:
            baseline = await bare_request_reply(stack, 2000, args.clients)
            elapsed, latencies, ids = await provision(stack, image, args.vms, args.clients)
            delete_s = await delete_all(stack, ids, args.clients)
    rate = args.vms / elapsed
    base50, base99 = pct(baseline, 0.5) * 1e3, pct(baseline, 0.99) * 1e3
    p50, p99 = pct(latencies, 0.5) * 1e3, pct(latencies, 0.99) * 1e3
    print(f"provision benchmark: {args.vms} VMs, {args.clients} clients, libvirt test driver")
    print(f"  baseline  bare NATS request/reply   p50 {base50:7.2f} ms   p99 {base99:7.2f} ms")
    print(f"  creates   POST -> running event     p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
    print(f"  throughput {rate:7.1f} creates/s (target >= 100)   deletes: "
          f"{len(ids) / delete_s:7.1f} /s")
    print(f"  p50 overhead over baseline {p50 - base50:7.2f} ms (target <= 50 ms); "
          f"ratio {p50 / base50:6.1f}x a bare request/reply")
    print(f"  mean {statistics.mean(latencies) * 1e3:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
