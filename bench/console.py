"""Console proxy throughput and latency, next to websockify, in the same run.

    .venv/bin/python bench/console.py [--mib 128] [--round-trips 500] [--runs 7]
                                      [--steps down,up,rtt]

Starts nats-server, the gateway (``lq-api``, its own process) and websockify (its own process),
both forwarding to one local TCP server (bench/console_target.py, its own process). One client
(aiohttp, this process) measures, alternating between the proxies:
- down: target → client, N MiB in binary frames (the framebuffer direction);
- up: client → target, N MiB in 64 KiB frames (masked, as a browser sends them);
- round trip of 64-byte messages through an echo: p50 and p99.
Prints both, and the ratios (targets: ≥ 1.0x websockify throughput both ways, p50 ≤ websockify).
Each console session takes a fresh single-use ticket. Everything started here is stopped by PID.
All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import statistics
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import nats

from limiquantix.common import nats_client, subjects
from limiquantix.common.model import utcnow
from limiquantix.common.nats_server import NatsServer, free_port
from limiquantix.common.process import stop_process
from limiquantix.common.vm_store import VmStore
from limiquantix.common.vms import VmRecord, VmState, VncEndpoint

MiB = 1 << 20
UP_FRAME = 64 * 1024
SMALL = 64
TOKEN = "bench-console-token"
BIN = Path(sys.executable).parent
STEP_TIMEOUT_S = 120.0

UrlFactory = Callable[[], Awaitable[str]]


@contextlib.asynccontextmanager
async def process(*argv: str, env: dict[str, str] | None = None,
                  log: Path | None = None) -> AsyncIterator[asyncio.subprocess.Process]:
    """A subprocess stopped (SIGTERM, then SIGKILL) by its PID at the end."""
    out = open(log, "ab") if log else asyncio.subprocess.DEVNULL  # noqa: SIM115
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE if log is None else out, stderr=out,
    )
    try:
        yield proc
    finally:
        await stop_process(proc, 10)


async def wait_port(port: int, proc: asyncio.subprocess.Process, what: str) -> None:
    for _ in range(400):
        if proc.returncode is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {port}")


async def receive_bytes(ws: aiohttp.ClientWebSocketResponse, size: int, what: str) -> None:
    """Read binary frames until ``size`` bytes have come (frames need not match the sends)."""
    got = 0
    while got < size:
        msg = await ws.receive()
        if msg.type is not aiohttp.WSMsgType.BINARY:
            raise RuntimeError(f"{what} ended early: {msg}")
        got += len(msg.data)


async def down(ws: aiohttp.ClientWebSocketResponse, size: int) -> float:
    """MiB/s target → client."""
    start = time.perf_counter()
    await ws.send_bytes(b"F" + struct.pack(">Q", size))
    await receive_bytes(ws, size, "stream")
    return size / MiB / (time.perf_counter() - start)


async def up(ws: aiohttp.ClientWebSocketResponse, size: int) -> float:
    """MiB/s client → target (acknowledged by the target once it has every byte)."""
    frame = bytes(UP_FRAME)
    start = time.perf_counter()
    await ws.send_bytes(b"S" + struct.pack(">Q", size))
    for _ in range(size // UP_FRAME):
        await ws.send_bytes(frame)
    msg = await ws.receive()
    if msg.type is not aiohttp.WSMsgType.BINARY or msg.data != b"K":
        raise RuntimeError(f"no acknowledgement: {msg}")
    return size / MiB / (time.perf_counter() - start)


async def round_trips(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[float]:
    """Seconds per 64-byte echo round trip."""
    await ws.send_bytes(b"E")
    payload = os.urandom(SMALL)
    samples = []
    for i in range(count + 50):
        start = time.perf_counter()
        await ws.send_bytes(payload)
        await receive_bytes(ws, SMALL, "echo")
        if i >= 50:  # warm-up excluded
            samples.append(time.perf_counter() - start)
    return samples


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children (websockify forks per client)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclasses.dataclass
class Figures:
    down: list[float] = dataclasses.field(default_factory=list)  # MiB/s
    up: list[float] = dataclasses.field(default_factory=list)
    cpu_per_gib: list[float] = dataclasses.field(default_factory=list)  # proxy CPU s per GiB
    rtt: list[float] = dataclasses.field(default_factory=list)  # seconds


async def measure(http: aiohttp.ClientSession, url_of: UrlFactory, pid: int, size: int,
                  count: int, figures: Figures, step: str) -> None:
    """One step ('down', 'up' or 'rtt') on a fresh console session."""
    cpu_before = cpu_seconds(pid)
    async with http.ws_connect(await url_of(), max_msg_size=0) as ws:
        if step == "down":
            figures.down.append(await asyncio.wait_for(down(ws, size), STEP_TIMEOUT_S))
        elif step == "up":
            figures.up.append(await asyncio.wait_for(up(ws, size), STEP_TIMEOUT_S))
        else:
            figures.rtt.extend(await asyncio.wait_for(round_trips(ws, count), STEP_TIMEOUT_S))
    if step != "rtt":
        await asyncio.sleep(0.2)  # websockify reaps its per-connection child
        figures.cpu_per_gib.append((cpu_seconds(pid) - cpu_before) / (size / (1 << 30)))


async def add_vm(nats_url: str, target_port: int) -> str:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await nats_client.ensure_jetstream(js, heartbeat_interval_s=5.0)
        store = VmStore(await js.key_value(subjects.VMS_BUCKET),
                        await js.key_value(subjects.VM_NAMES_BUCKET))
        vm_id, now = str(uuid.uuid4()), utcnow()
        await store.create(VmRecord(
            id=vm_id, name="bench-console", state=VmState.RUNNING, node="bench", image="none",
            vcpus=1, memory_mib=64, disk_gib=1, created_at=now, updated_at=now,
            vnc=VncEndpoint(host="127.0.0.1", port=target_port),
        ))
        return vm_id
    finally:
        await nc.close()


async def run(args: argparse.Namespace) -> None:
    size, count = args.mib * MiB, args.round_trips
    with tempfile.TemporaryDirectory(prefix="lq-bench-console-") as tmp:
        root = Path(tmp)
        target_port, api_port, wsf_port = free_port(), free_port(), free_port()
        async with contextlib.AsyncExitStack() as stack:
            nats_server = await stack.enter_async_context(NatsServer(root / "nats"))
            target = await stack.enter_async_context(process(
                sys.executable, str(Path(__file__).with_name("console_target.py")),
                str(target_port)))
            await wait_port(target_port, target, "target")
            env = {k: v for k, v in os.environ.items() if not k.startswith("LQ_")}
            env.update(LQ_NATS_URL=nats_server.url, LQ_DATA_DIR=str(root / "api"),
                       LQ_API_PORT=str(api_port), LQ_API_TOKEN=TOKEN, LQ_LOG_LEVEL="warning",
                       LQ_LOG_FORMAT="json", LQ_CONSOLE_ALLOW_NO_ORIGIN="true")
            api = await stack.enter_async_context(
                process(str(BIN / "lq-api"), env=env, log=root / "api.log"))
            await wait_port(api_port, api, "lq-api")
            websockify = await stack.enter_async_context(process(
                str(BIN / "websockify"), f"127.0.0.1:{wsf_port}", f"127.0.0.1:{target_port}",
                log=root / "websockify.log"))
            await wait_port(wsf_port, websockify, "websockify")
            vm_id = await add_vm(nats_server.url, target_port)
            http = await stack.enter_async_context(aiohttp.ClientSession())
            api_url = f"http://127.0.0.1:{api_port}"

            async def ours() -> str:
                async with http.post(f"{api_url}/v1/vms/{vm_id}/console",
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                    r.raise_for_status()
                    path: str = (await r.json())["url"]
                    return f"ws://127.0.0.1:{api_port}{path}"

            async def theirs() -> str:
                return f"ws://127.0.0.1:{wsf_port}/"

            results = {"limiquantix": Figures(), "websockify": Figures()}
            pids = {"limiquantix": api.pid, "websockify": websockify.pid}
            # Paired and interleaved: each step runs on both proxies back to back, in alternating
            # order, so load from other processes hits both alike.
            for run_index in range(args.runs):
                for step in args.steps.split(","):
                    order = [("limiquantix", ours), ("websockify", theirs)]
                    if run_index % 2:
                        order.reverse()
                    for name, url_of in order:
                        await measure(http, url_of, pids[name], size, count, results[name],
                                      step)
            report(results, args)


def report(results: dict[str, Figures], args: argparse.Namespace) -> None:
    rows = {}
    print(f"console proxy benchmark: {args.mib} MiB each way x {args.runs} runs, "
          f"{args.round_trips} x {SMALL}-byte round trips per run; throughput and CPU: median "
          f"of runs; round trips: all samples")
    print(f"{'proxy':<12} {'down MiB/s':>11} {'up MiB/s':>10} {'p50 us':>8} {'p99 us':>8} "
          f"{'proxy CPU s/GiB':>16}")
    for name, f in results.items():
        rows[name] = (statistics.median(f.down or [0.0]), statistics.median(f.up or [0.0]),
                      percentile(f.rtt or [0.0], 0.5) * 1e6,
                      percentile(f.rtt or [0.0], 0.99) * 1e6,
                      statistics.median(f.cpu_per_gib or [0.0]))
        r = rows[name]
        print(f"{name:<12} {r[0]:>11.0f} {r[1]:>10.0f} {r[2]:>8.0f} {r[3]:>8.0f} {r[4]:>16.2f}")
    ours, base = rows["limiquantix"], rows["websockify"]
    names = ("down", "up", "p50", "p99", "CPU per GiB")
    print("ratios (limiquantix / websockify): " + ", ".join(
        f"{label} {o / b:.2f}x" for label, o, b in zip(names, ours, base, strict=True) if b))
    if args.steps == "down,up,rtt":
        met = ours[0] >= base[0] and ours[1] >= base[1] and ours[2] <= base[2]
        print("targets: down >= 1.0x, up >= 1.0x, p50 <= 1.0x -> "
              + ("met" if met else "NOT met"))
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=128, help="MiB per throughput step")
    parser.add_argument("--round-trips", type=int, default=500, help="per step")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--steps", default="down,up,rtt", help="any of down,up,rtt")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
