"""A simulated fleet: N real node agents against real gateways and a real NATS, on 127.0.0.1.

    .venv/bin/python bench/fleet.py --nodes 1000 [--vms 10000] [--clients 50] [--gateways 2]
                                    [--sse 100] [--max-seconds 900] [--rate R] [--json FILE]

What is real and what is not:

- NATS (``nats-server`` with JetStream and the production identities and permissions), the
  gateways (``lq-api`` processes, ``--gateways`` of them, clients spread over them as a
  round-robin Service would) and the node agents are the real code. Each agent is
  ``limiquantix.node_agent.main.serve`` — consumer, heartbeat, record view, reconcile, RPC,
  disk and domain XML — with its own NATS connection, identity, data directory and heartbeat.
- The hypervisor is the one fake: each agent's ``LQ_LIBVIRT_URI`` is libvirt's test driver
  with a host file (``test:///<root>/host.xml``), which gives every connection a private,
  in-memory hypervisor (measured: 1,000 connections open in 0.23 s, ~33 MB). So the agents'
  ``LibvirtHost`` (libvirt_host.py) runs unchanged over real libvirt calls; nothing boots.
  Disks are real (``qemu-img create`` of a blank qcow2 per VM; no image, so no seed ISO).
- All agents run in ONE child process (``bench/fleet.py agents``): on a 2-core machine a
  thousand processes do not fit, one event loop with a thousand agents does. It is
  therefore also the bottleneck the numbers show: every agent's work shares one core.

Reports (and ``--json``): nodes seen online by the gateway (minimum over the run, sampled every
2 s), gateway CPU (idle with every node heartbeating, and during creates), placement spread (VMs
per node), creates/s and p50/p99 POST → ``running`` (the SSE event) with ``--clients``
closed-loop clients (or paced at ``--rate`` creates/s, to see the latency below saturation:
closed-loop clients measure the queue at the machine's ceiling), where that time goes (p50 and
p99 of each step: POST → pending → creating → starting → running), CPU per VM made (gateways,
agents, NATS, and this process: the load generator shares the cores), the agents processes'
event-loop stalls and full-collection pauses, ``GET /v1/vms?limit=100`` and ``GET /v1/nodes``
latency at the final VM count, SSE fan-out to ``--sse`` subscribers (events each received,
p50/p99 lag from the event's time). Then it checks the invariants: every node online throughout,
every VM ``running`` on exactly one node (the one its record names: read from the agents'
libvirt), no node allocated past its capacity. It stops by itself (``--max-seconds`` bounds the
create phase) and removes its temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import gc
import itertools
import json
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

NODE_VCPUS = 8  # x 4.0 allocation ratio: 32 vCPUs to place per node
NODE_MEMORY_MIB = 8192
VM_BODY = {"vcpus": 1, "memory_mib": 128, "disk_gib": 1}  # no image: a blank disk, no seed
HOST_XML = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>8</cores><threads>1</threads>
       <active>8</active><mhz>2000</mhz><model>x86_64</model></cpu>
  <memory>8388608</memory>
</node>
"""
ONLINE_SAMPLE_S = 2.0
AGENT_START_BATCH = 50
AGENT_THREADS = 64
WAVE_WAIT_S = 30.0
RESTART_AFTER_S = 2.0
REFREEZE_S = 5.0  # the agents process freezes its heap this often (see agents_main)
AGENTS_STOP_S = 180.0
SSE_OPEN_S = 60.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the agents process -----------------------------------------------------------------------

def agents_main(spec_file: Path) -> None:
    """Run every agent of ``spec_file`` in this process until SIGTERM; then write, for each
    node, the domains its libvirt runs (the invariants' ground truth)."""
    from limiquantix.common import process_health
    from limiquantix.common import settings as settings_mod
    from limiquantix.common.logging import configure_logging
    from limiquantix.node_agent import main as agent_main
    from limiquantix.node_agent.heartbeat import Heartbeat
    from limiquantix.node_agent.libvirt_host import LibvirtHost

    spec = json.loads(spec_file.read_text())
    configure_logging("fleet-agents", fmt="json", level="warning")
    # What an idle agent's two timers cost (--agent-poll-s, --agent-watch-heartbeat-s): the
    # agent's own module constants, set here for a comparison run.
    from limiquantix.node_agent import consumer, record_view
    if spec.get("poll_s"):
        consumer.FETCH_TIMEOUT_S = spec["poll_s"]
    if spec.get("watch_heartbeat_s"):
        record_view.NODE_WATCH_HEARTBEAT_S = spec["watch_heartbeat_s"]
    if spec.get("record_view") == "bucket":
        agent_main.NodeRecords = _bucket_records()  # type: ignore[misc]
    hosts: dict[str, LibvirtHost] = {}
    beaten: set[str] = set()
    close_lock = asyncio.Lock()
    host_node: contextvars.ContextVar[str] = contextvars.ContextVar("host_node")

    class RecordedHost(LibvirtHost):
        """The real wrapper; only remembered per node so the domains can be read at the end."""

        @classmethod
        @contextlib.asynccontextmanager
        async def open(cls, uri: str, *, retry_s: float = 120.0) -> AsyncIterator[LibvirtHost]:
            async with contextlib.AsyncExitStack() as stack:
                host = await stack.enter_async_context(LibvirtHost.open(uri, retry_s=retry_s))
                hosts[host_node.get()] = host
                try:
                    yield host
                finally:
                    # One libvirt event implementation per process: its drain() is not
                    # reentrant, and here a thousand agents close at once.
                    async with close_lock:
                        await stack.aclose()

    class RecordedHeartbeat(Heartbeat):
        """The real heartbeat; its first beat tells the start-up that this agent is up."""

        async def beat(self) -> None:
            await super().beat()
            beaten.add(self._node_id)

    # Instrumentation, not a fake: the agents' own LibvirtHost, remembered per node.
    agent_main.LibvirtHost = RecordedHost  # type: ignore[misc]
    agent_main.Heartbeat = RecordedHeartbeat  # type: ignore[misc]

    gc_pauses: list[float] = []  # the full collections' pauses, ms (a tail source)

    def full_pause(generation: int, pause_s: float) -> None:
        if generation == 2:
            gc_pauses.append(round(1000 * pause_s, 1))

    process_health.time_gc(also=full_pause)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Each real agent has its own process and so its own worker threads (libvirt calls,
        # file writes); a thousand agents sharing the default pool of 6 would queue behind
        # each other's fsyncs, which no real fleet does.
        loop.set_default_executor(ThreadPoolExecutor(max_workers=AGENT_THREADS))
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        agent_stop = asyncio.Event()
        tasks = []
        failures: list[str] = []

        async def one(env: dict[str, str]) -> None:
            settings = settings_mod.load(env)
            host_node.set(settings.node_id)
            while not agent_stop.is_set():
                try:
                    await agent_main.serve(settings, agent_stop)
                except Exception:  # one agent failing must not end the others
                    failures.append(settings.node_id)
                    if len(failures) <= 3:
                        print(f"agent {settings.node_id} failed:\n{traceback.format_exc()}",
                              file=sys.stderr, flush=True)
                    # Restarted like a supervisor (systemd, Kubernetes) restarts a failed agent.
                    await asyncio.sleep(RESTART_AFTER_S)

        # Start in waves, each once most of the previous one heartbeats: a real fleet's agents
        # start on their own hosts; a thousand starting at once on one core time out.
        for i, env in enumerate(spec["agents"]):
            tasks.append(asyncio.create_task(one(env)))
            if i % AGENT_START_BATCH == AGENT_START_BATCH - 1:
                wave_deadline = time.monotonic() + WAVE_WAIT_S
                while (len(beaten) + len(failures) < 0.9 * len(tasks)
                       and time.monotonic() < wave_deadline):
                    await asyncio.sleep(0.1)
        # Hundreds of agents in one heap make each full collection walk all their objects
        # (measured: 0.4-0.9 s pauses, the tail of POST -> running), where a real agent's heap
        # is a few hundredth of this one. Frozen, the collector skips them (gc.freeze): once
        # all have started, then every few seconds, so a full collection walks only what the
        # last seconds made, as each agent's own heap would (refcounting still frees garbage).
        gc.freeze()

        async def refreeze() -> None:
            while True:
                await asyncio.sleep(REFREEZE_S)
                gc.freeze()

        refreezer = asyncio.create_task(refreeze())
        parent = os.getppid()

        async def orphaned() -> None:  # the driver died: stop, never outlive it
            while os.getppid() == parent:
                await asyncio.sleep(2)
            stop.set()

        watchdog = asyncio.create_task(orphaned())
        stalls: list[float] = []  # how late the loop runs a 50 ms timer: its stalls
        probe = asyncio.create_task(process_health.probe_loop_lag(0.05, also=stalls.append))
        await stop.wait()
        watchdog.cancel()
        probe.cancel()
        refreezer.cancel()
        domains: dict[str, list[str]] = {}
        for node, host in hosts.items():
            with contextlib.suppress(Exception):
                domains[node] = [d.uuid for d in await host.list_domains() if d.active]
        Path(spec["stats"]).write_text(json.dumps({
            "domains": domains, "restarts": failures,
            "loop_stall_p99_ms": round(1000 * pct(stalls, 0.99), 1) if stalls else 0.0,
            "loop_stall_max_ms": round(1000 * max(stalls, default=0.0), 1),
            "gc_gen2_pauses_ms": sorted(gc_pauses, reverse=True)[:5]}))
        agent_stop.set()
        await asyncio.wait(tasks, timeout=30)

    profile = os.environ.get("LQ_FLEET_PROFILE")  # a file: where the idle agents' CPU goes
    if profile:
        import cProfile
        import pstats
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(run())
        profiler.disable()
        with open(profile, "w") as out:
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(40)
    else:
        asyncio.run(run())


def _bucket_records() -> Any:
    """The record view as it was before issue 16's fix, for an A/B run (``--agent-record-view
    bucket``): every agent watches the whole ``lq_vms`` bucket and keeps its own records."""
    from limiquantix.common import subjects
    from limiquantix.common.kv_view import KvView
    from limiquantix.common.vm_store import decode_record
    from limiquantix.node_agent.libvirt_host import domain_uuid

    class BucketRecords(KvView[Any]):
        def __init__(self, js: Any, node_id: str, *, local: Any = ()) -> None:
            super().__init__(js, subjects.VMS_BUCKET, decode_record)
            self._node_id = node_id
            self._by_domain: dict[str, str] = {}
            self.changed = asyncio.Event()

        def all(self) -> list[Any]:
            return self.values()

        def vm_for_domain(self, dom_uuid: str) -> str | None:
            return self._by_domain.get(dom_uuid)

        def follow_vm(self, vm_id: str) -> None:
            """Every VM is watched already."""

        def _keep(self, key: str, value: Any) -> bool:
            return bool(value.node == self._node_id)

        def _on_change(self, key: str, old: Any, new: Any) -> None:
            if new is None:
                self._by_domain.pop(domain_uuid(key), None)
            else:
                self._by_domain[domain_uuid(key)] = key
            if (old is None) != (new is None):
                self.changed.set()

    return BucketRecords


# --- the driver -------------------------------------------------------------------------------

class Gateways:
    """Processes' CPU time (the gateways', the agents'), read from /proc (ticks → seconds)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self._tick = os.sysconf("SC_CLK_TCK")

    def cpu_s(self) -> float:
        total = 0.0
        for pid in self.pids:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / self._tick
        return total


def driver_cpu_s() -> float:
    """This process's CPU time (the bench's own clients and subscribers)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def online_count(http: aiohttp.ClientSession, url: str) -> tuple[int, int]:
    """(online, listed) nodes as the gateway answers, following every page."""
    online = listed = 0
    cursor = None
    while True:
        query = f"?limit=1000&cursor={cursor}" if cursor else "?limit=1000"
        async with http.get(f"{url}/v1/nodes{query}") as response:
            body = await response.json()
        online += sum(1 for n in body["items"] if n["status"] == "online")
        listed += len(body["items"])
        cursor = body.get("next_cursor")
        if not cursor:
            return online, listed


async def sse(http: aiohttp.ClientSession, url: str, on_event: Any,
              ready: asyncio.Event) -> None:
    """Follow GET /v1/events from now; ``on_event(id, type, data, received_at)``."""
    async with http.get(f"{url}/v1/events",
                        timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as response:
        assert response.status == 200, await response.text()
        ready.set()
        # Whole chunks split into frames, not line by line: the load generator shares the
        # cores with what it measures (line reads were most of its CPU with 101 streams).
        buffer = b""
        async for chunk in response.content.iter_any():
            buffer += chunk
            *frames, buffer = buffer.split(b"\n\n")
            for frame in frames:
                event_id, kind, data = "", "", b""
                for line in frame.split(b"\n"):
                    if line.startswith(b"id:"):
                        event_id = line[3:].strip().decode()
                    elif line.startswith(b"event:"):
                        kind = line[6:].strip().decode()
                    elif line.startswith(b"data:"):
                        data += line[5:].strip()
                if data:
                    on_event(event_id, kind, msgspec.json.decode(data), time.time())


def event_time(data: dict[str, Any]) -> float:
    from datetime import datetime
    return datetime.fromisoformat(data["time"].replace("Z", "+00:00")).timestamp()


def agent_tuning(args: argparse.Namespace) -> dict[str, Any]:
    """The A/B options for the agents' process (absent from a caller's own Namespace: none)."""
    return {"poll_s": getattr(args, "agent_poll_s", 0.0),
            "record_view": getattr(args, "agent_record_view", "own"),
            "watch_heartbeat_s": getattr(args, "agent_watch_heartbeat_s", 0.0)}


async def drive(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from limiquantix.common.nats_auth import node_identity
    from limiquantix.local.stack import Stack

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.support.gateways import start_gateway

    node_ids = [f"sim-{i:04d}" for i in range(args.nodes)]
    host_xml = root / "host.xml"
    host_xml.write_text(HOST_XML)
    common_env = {"LQ_LOG_LEVEL": "warning", "LQ_HOST_IMAGE_DIRS": str(root)}
    result: dict[str, Any] = {"nodes": args.nodes, "gateways": args.gateways,
                              "clients": args.clients, "agent_procs": args.agent_procs,
                              "load_average_at_start": os.getloadavg()[0]}
    started = time.monotonic()
    stack = Stack(root / "stack", nodes=tuple(node_ids), with_image_library=False,
                  extra_env=common_env)
    stack.initial_nodes = ()  # identities for all; no agent processes of its own
    async with stack:
        # (the Stack made every node's NATS identity; its agents run in one process below)
        urls = [stack.api_url]
        for i in range(2, args.gateways + 1):
            urls.append(await start_gateway(stack, f"api-{i}"))
        pids = [s.process.pid for name, s in stack.services.items()
                if name.startswith("api") and s.process is not None]
        gateways = Gateways(pids)
        agents = []
        for node in node_ids:
            env = stack._env(root / "nodes" / node, node_identity(node), LQ_NODE_ID=node,
                             LQ_IMAGE_LIBRARY_SECRET_FILE=str(stack.library_node_key_file),
                             LQ_LIBVIRT_URI=f"test://{host_xml}",
                             LQ_NODE_VCPUS=str(args.node_vcpus),
                             LQ_NODE_MEMORY_MIB=str(args.node_memory_mib))
            agents.append(env)
        # The agents, split over --agent-procs processes (each one event loop).
        procs = []
        stats = [root / f"agents-{k}-stats.json" for k in range(args.agent_procs)]
        log = open(root / "agents.log", "wb")  # noqa: SIM115 - closed below
        for k in range(args.agent_procs):
            spec = root / f"agents-{k}.json"
            spec.write_text(json.dumps({"agents": agents[k::args.agent_procs],
                                        "stats": str(stats[k]), **agent_tuning(args)}))
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, __file__, "agents", "--spec", str(spec), stdout=log, stderr=log))
        headers = stack.headers()
        try:
            async with aiohttp.ClientSession(headers=headers) as http:
                t0 = time.monotonic()
                last_note = 0.0
                while (online := (await online_count(http, urls[0]))[0]) < args.nodes:
                    if time.monotonic() - last_note > 10:
                        last_note = time.monotonic()
                        print(f"{online} of {args.nodes} nodes online after "
                              f"{time.monotonic() - t0:.0f} s", flush=True)
                    if any(proc.returncode is not None for proc in procs):
                        tail = (root / "agents.log").read_text()[-2000:]
                        raise RuntimeError(f"agents exited: {tail}")
                    if time.monotonic() - t0 > args.start_timeout:
                        # Go on with the nodes that are up: the report says how many.
                        print(f"only {online} of {args.nodes} nodes online after "
                              f"{args.start_timeout:g} s; measuring anyway", flush=True)
                        break
                    await asyncio.sleep(1)
                result["agents_online_after_s"] = round(time.monotonic() - t0, 1)
                result["nodes_online_at_start"] = (await online_count(http, urls[0]))[0]
                print(f"{result['nodes_online_at_start']} nodes online after "
                      f"{result['agents_online_after_s']} s", flush=True)
                nats_pids = [stack.nats.process.pid] if isinstance(
                    getattr(stack.nats, "process", None), asyncio.subprocess.Process) else []
                result |= await measure(args, http, urls, gateways,
                                        Gateways([proc.pid for proc in procs]),
                                        Gateways(nats_pids))
            # The measurements, before anything else can fail (a slow stop lost a run's).
            print(json.dumps({k: v for k, v in result.items() if not k.startswith("_")}),
                  flush=True)
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            stopped_by = time.monotonic() + AGENTS_STOP_S
            for proc in procs:
                # Each process writes its domains first, then stops its agents; hundreds of
                # them closing libvirt one at a time (below) may outlast this: then killed.
                try:
                    await asyncio.wait_for(proc.wait(), max(1.0, stopped_by - time.monotonic()))
                except TimeoutError:
                    print(f"agents process {proc.pid} still stopping after {AGENTS_STOP_S:g} s;"
                          " killed", flush=True)
                    proc.kill()
                    await proc.wait()
                    result["agents_killed_at_stop"] = result.get("agents_killed_at_stop", 0) + 1
            domains: dict[str, list[str]] = {}
            restarts = 0
            for file in stats:
                if file.exists():
                    data = json.loads(file.read_text())
                    domains |= data["domains"]
                    restarts += len(data["restarts"])
                    result.setdefault("agents_loop_stall_p99_ms", []).append(
                        data["loop_stall_p99_ms"])
                    result.setdefault("agents_loop_stall_max_ms", []).append(
                        data["loop_stall_max_ms"])
                    result.setdefault("agents_gc_gen2_pauses_ms", []).append(
                        data["gc_gen2_pauses_ms"])
            result["agent_restarts"] = restarts
            result |= await invariants(result.pop("_vms"), result.pop("_nodes"), domains)
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            log.close()
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


async def measure(args: argparse.Namespace, http: aiohttp.ClientSession, urls: list[str],
                  gateways: Gateways, agents: Gateways, nats: Gateways) -> dict[str, Any]:
    out: dict[str, Any] = {}
    online_min = [args.nodes]
    loads: list[float] = []  # the machine's 1-minute load average (other work shares it)
    stop_sampling = asyncio.Event()

    async def sample_online() -> None:
        while not stop_sampling.is_set():
            loads.append(os.getloadavg()[0])
            try:
                online, _ = await online_count(http, urls[0])
            except (aiohttp.ClientError, TimeoutError) as exc:  # a missed sample, not a stop
                print(f"online sample failed: {exc!r}", flush=True)
            else:
                online_min[0] = min(online_min[0], online)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_sampling.wait(), ONLINE_SAMPLE_S)

    sampler = asyncio.create_task(sample_online())
    # Heartbeat handling: gateway CPU while every node beats and nothing else happens (and
    # what the idle agents themselves cost: timers, long polls, watches, heartbeats).
    cpu0, agents0, t0 = gateways.cpu_s(), agents.cpu_s(), time.monotonic()
    nats0 = nats.cpu_s()
    await asyncio.sleep(args.idle_s)
    idle = time.monotonic() - t0
    out["gateway_cpu_idle_pct"] = round(100 * (gateways.cpu_s() - cpu0) / idle, 1)
    out["nats_cpu_idle_pct"] = round(100 * (nats.cpu_s() - nats0) / idle, 1)
    out["agents_cpu_idle_pct"] = round(100 * (agents.cpu_s() - agents0) / idle, 1)
    out["agent_idle_cpu_ms_per_s"] = round(
        1000 * (agents.cpu_s() - agents0) / idle / args.nodes, 3)

    # SSE subscribers (fan-out) and the watcher that sees each VM reach running.
    running: dict[str, asyncio.Future[float]] = {}
    lags: list[float] = []
    received = [0] * args.sse

    stages: dict[str, dict[str, float]] = {}

    def watcher(_id: str, kind: str, data: dict[str, Any], at: float) -> None:
        if kind == "vm.state_changed":
            stages.setdefault(data["vm_id"], {}).setdefault(data["state"], event_time(data))
        if kind == "vm.state_changed" and data.get("state") == "running":
            future = running.setdefault(data["vm_id"], asyncio.get_running_loop().create_future())
            if not future.done():
                future.set_result(at)

    def subscriber(index: int) -> Any:
        def on(_id: str, kind: str, data: dict[str, Any], at: float) -> None:
            received[index] += 1
            if kind == "vm.state_changed":
                lags.append(at - event_time(data))
        return on

    # Their own session without a connection limit: aiohttp's default of 100 per session
    # would leave no connection for the other requests while 101 streams are open.
    sse_http = aiohttp.ClientSession(headers=http.headers,
                                     connector=aiohttp.TCPConnector(limit=0))
    streams = []
    readies = []
    for i in range(args.sse + 1):
        ready = asyncio.Event()
        on = watcher if i == 0 else subscriber(i - 1)
        streams.append(asyncio.create_task(sse(sse_http, urls[i % len(urls)], on, ready)))
        readies.append(ready)
    opened_by = time.monotonic() + SSE_OPEN_S
    while not all(r.is_set() for r in readies) and time.monotonic() < opened_by:
        await asyncio.sleep(0.1)
    if not readies[0].is_set():
        raise TimeoutError("the watcher's event stream did not open")
    out["sse_open_s"] = round(time.monotonic() - opened_by + SSE_OPEN_S, 2)
    out["sse_subscribers_opened"] = sum(r.is_set() for r in readies[1:])

    latencies: list[float] = []
    refused: dict[str, int] = {}
    next_index = [0]
    deadline = time.monotonic() + args.max_seconds

    started = time.monotonic()
    late: list[float] = []  # --rate: how far behind its slot each create was sent

    async def client(gateway: str) -> None:
        async with aiohttp.ClientSession(headers=http.headers) as own:
            while next_index[0] < args.vms and time.monotonic() < deadline:
                index = next_index[0]
                next_index[0] += 1
                if args.rate:  # paced: create N is due at N / rate, whichever client is free
                    due = started + index / args.rate
                    if (wait := due - time.monotonic()) > 0:
                        await asyncio.sleep(wait)
                    else:
                        late.append(-wait)
                body = {**VM_BODY, "name": f"f{index:06d}"}
                begin = time.time()
                async with own.post(f"{gateway}/v1/vms", json=body) as response:
                    answer = await response.json()
                if response.status != 202:
                    refused[answer.get("code", str(response.status))] = refused.get(
                        answer.get("code", str(response.status)), 0) + 1
                    continue
                stages.setdefault(answer["id"], {})["post"] = begin
                future = running.setdefault(answer["id"],
                                            asyncio.get_running_loop().create_future())
                try:
                    at = await asyncio.wait_for(asyncio.shield(future), args.vm_timeout)
                except TimeoutError:
                    refused["not_running_in_time"] = refused.get("not_running_in_time", 0) + 1
                    continue
                latencies.append(at - begin)

    cpu0, t0 = gateways.cpu_s(), time.monotonic()
    agents0, nats0, driver0 = agents.cpu_s(), nats.cpu_s(), driver_cpu_s()
    await asyncio.gather(*(client(urls[i % len(urls)]) for i in range(args.clients)))
    elapsed = time.monotonic() - t0
    out["gateway_cpu_creates_pct"] = round(100 * (gateways.cpu_s() - cpu0) / elapsed, 1)
    out["agents_cpu_creates_pct"] = round(100 * (agents.cpu_s() - agents0) / elapsed, 1)
    out["nats_cpu_creates_pct"] = round(100 * (nats.cpu_s() - nats0) / elapsed, 1)
    # The load generator shares the cores: its 50 clients and 100 subscribers' parsing.
    out["driver_cpu_creates_pct"] = round(100 * (driver_cpu_s() - driver0) / elapsed, 1)
    # CPU per VM made (idle work included), whatever share of the machine the run got.
    made = max(1, len(latencies))
    out["cpu_ms_per_create"] = {
        "gateways": round(1000 * (gateways.cpu_s() - cpu0) / made, 1),
        "agents": round(1000 * (agents.cpu_s() - agents0) / made, 1),
        "nats": round(1000 * (nats.cpu_s() - nats0) / made, 1),
        "driver": round(1000 * (driver_cpu_s() - driver0) / made, 1)}
    out["create_phase_s"] = round(elapsed, 1)
    if args.rate:  # offered vs taken: creates sent late mean the clients could not keep up
        out["offered_creates_per_s"] = args.rate
        out["sent_late"] = len(late)
        out["sent_late_p99_s"] = round(pct(late, 0.99), 3) if late else 0.0
    out["creates_per_s"] = round(len(latencies) / elapsed, 1)
    out["create_p50_s"] = round(pct(latencies, 0.5), 3)
    out["create_p99_s"] = round(pct(latencies, 0.99), 3)
    out["create_failures"] = refused
    # Where the time goes: event time of each state after the previous one (from the POST sent:
    # the gateway's part), p50 and p99, seconds.
    order = ["pending", "creating", "starting", "running"]
    for q in (50, 99):
        out[f"create_stages_p{q}_s"] = {
            f"{a}->{b}": round(pct([t[b] - t[a] for t in stages.values() if a in t and b in t],
                                   q / 100), 3) for a, b in itertools.pairwise(("post", *order))}
    await asyncio.sleep(1)  # the last events reach every subscriber
    out["sse_subscribers"] = args.sse
    opened = [n for n, ready in zip(received, readies[1:], strict=True) if ready.is_set()]
    out["sse_events_min"] = min(opened) if opened else 0
    out["sse_events_max"] = max(opened) if opened else 0
    out["sse_lag_p50_ms"] = round(1000 * pct(lags, 0.5), 1)
    out["sse_lag_p99_ms"] = round(1000 * pct(lags, 0.99), 1)
    for task in streams:
        task.cancel()
    await asyncio.gather(*streams, return_exceptions=True)
    await sse_http.close()

    vms: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = f"?limit=1000&cursor={cursor}" if cursor else "?limit=1000"
        async with http.get(f"{urls[0]}/v1/vms{query}") as response:
            body = await response.json()
        vms += body["items"]
        if not (cursor := body.get("next_cursor")):
            break
    out["vms"] = len(vms)
    out |= await list_latencies(http, urls[0])
    stop_sampling.set()
    await sampler
    out["nodes_online_min"] = online_min[0]
    out["load_average"] = {"min": min(loads), "max": max(loads),
                           "mean": round(statistics.fmean(loads), 1)} if loads else None
    nodes: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = f"?limit=1000&cursor={cursor}" if cursor else "?limit=1000"
        async with http.get(f"{urls[0]}/v1/nodes{query}") as response:
            body = await response.json()
        nodes += body["items"]
        if not (cursor := body.get("next_cursor")):
            break
    counts = [n["vm_count"] for n in nodes]
    out["spread_vms_per_node"] = {"min": min(counts), "max": max(counts),
                                  "stdev": round(statistics.pstdev(counts), 2)}
    out["_vms"], out["_nodes"] = vms, nodes
    return out


async def list_latencies(http: aiohttp.ClientSession, url: str, rounds: int = 50
                         ) -> dict[str, Any]:
    async def timed(path: str) -> float:
        begin = time.perf_counter()
        async with http.get(url + path) as response:
            await response.read()
            assert response.status == 200
        return time.perf_counter() - begin

    first = [await timed("/v1/vms?limit=100") for _ in range(rounds)]
    async with http.get(url + "/v1/vms?limit=100") as response:
        cursor = (await response.json()).get("next_cursor")
    deeper = [await timed(f"/v1/vms?limit=100&cursor={cursor}") for _ in range(rounds)] \
        if cursor else []
    nodes_page = [await timed("/v1/nodes?limit=100") for _ in range(rounds)]
    nodes_all = [await timed("/v1/nodes") for _ in range(max(5, rounds // 5))]
    return {
        "list_vms_p50_ms": round(1000 * pct(first, 0.5), 1),
        "list_vms_p99_ms": round(1000 * pct(first, 0.99), 1),
        "list_vms_page2_p50_ms": round(1000 * pct(deeper, 0.5), 1) if deeper else None,
        "list_nodes_p50_ms": round(1000 * pct(nodes_page, 0.5), 1),
        "list_nodes_all_p50_ms": round(1000 * pct(nodes_all, 0.5), 1),
    }


async def invariants(vms: list[dict[str, Any]], nodes: list[dict[str, Any]],
                     domains: dict[str, list[str]]) -> dict[str, Any]:
    """Every VM running once, where its record says; no node past its capacity."""
    where: dict[str, list[str]] = {}
    for node, uuids in domains.items():
        for uuid_ in uuids:
            where.setdefault(uuid_, []).append(node)
    not_running = [vm["name"] for vm in vms if vm["state"] != "running"]
    misplaced = [vm["name"] for vm in vms if where.get(vm["id"]) != [vm["node"]]]
    over = [n["id"] for n in nodes
            if n["allocated_vcpus"] > n["vcpus_capacity"]
            or n["allocated_memory_mib"] > n["memory_mib_capacity"]]
    return {"vms_not_running": len(not_running), "vms_not_exactly_once": len(misplaced),
            "domains_total": sum(len(v) for v in domains.values()),
            "nodes_over_capacity": len(over), "examples": (not_running + misplaced)[:5]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "agents":
        parser = argparse.ArgumentParser(prog="fleet.py agents")
        parser.add_argument("agents")
        parser.add_argument("--spec", type=Path, required=True)
        agents_main(parser.parse_args().spec)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--vms", type=int, default=10000, help="VMs to create (closed loop)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="offer this many creates/s (paced, still at most one in flight "
                             "per client); 0: closed loop, each client as fast as it can")
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--node-vcpus", type=int, default=NODE_VCPUS,
                        help="each simulated node's vCPUs (x 4.0 to place)")
    parser.add_argument("--node-memory-mib", type=int, default=NODE_MEMORY_MIB)
    parser.add_argument("--agent-procs", type=int, default=1,
                        help="processes the agents are split over (one event loop each)")
    parser.add_argument("--sse", type=int, default=100, help="SSE subscribers (fan-out)")
    parser.add_argument("--idle-s", type=float, default=10.0,
                        help="seconds of heartbeats alone (gateway CPU at idle)")
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="bound of the create phase (the run reports what it reached)")
    parser.add_argument("--vm-timeout", type=float, default=120.0)
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--agent-record-view", choices=("own", "bucket"), default="own",
                        help="bucket: the agents watch the whole lq_vms bucket, as before "
                             "issue 16's fix (an A/B run)")
    parser.add_argument("--agent-poll-s", type=float, default=0.0,
                        help="the agents' command long poll (default: the agent's own)")
    parser.add_argument("--agent-watch-heartbeat-s", type=float, default=0.0,
                        help="the agents' watch idle heartbeat (default: the agent's own)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lq-fleet-") as tmp:
        result = asyncio.run(drive(args, Path(tmp)))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
