"""JetStream failover with the whole system running on a three-server NATS cluster.

While 50 creates are in flight from several clients, NATS servers are killed (``kill -9``: the
JetStream meta leader, then the commands stream's leader) or restarted one after another.
Every VM must reach ``running`` exactly once (no lost command, no second disk), SSE clients
resuming with ``Last-Event-ID`` must see every event once and in order, and each server that
came back must catch up (nats-server's ``/healthz``: every copy it holds is current).
Real processes throughout: three nats-servers, the gateway, two node agents (libvirt's test
driver), no image library (blank disks).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest

from limiquantix.common import subjects
from limiquantix.common.nats_server import NatsCluster, NatsServer
from limiquantix.local.stack import Stack
from tests.support.flows import FAST_ENV, create_until_answered, sse_events

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]

NODES = ("node-a", "node-b")
CREATES = 50
CLIENTS = 5
SSE_CLIENTS = 2
# The node agents' capacity is not what is tested: 50 small VMs fit. A create whose request
# failed after its record landed (an election ate the answers) is finished by the gateway's
# create sweeper: 10 s here instead of the default 60 keeps the test short.
ENV = {**FAST_ENV, "LQ_NODE_VCPUS": "16", "LQ_NODE_MEMORY_MIB": "65536",
       "LQ_LOG_LEVEL": "info", "LQ_CREATE_SWEEP_AFTER_S": "10"}
VM = {"vcpus": 1, "memory_mib": 128, "disk_gib": 1}


@dataclass
class Run:
    """What happened during one run: answers, events seen by each SSE client, timings."""

    answered: list[str] = field(default_factory=list)  # VM ids, as POSTs were answered
    seen: list[list[tuple[int, str, dict[str, Any]]]] = field(default_factory=list)
    reconnects: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def cluster_stack(root: Path) -> AsyncIterator[Stack]:
    async with Stack(root, nodes=NODES, with_image_library=False, extra_env=ENV,
                     nats_cluster=3) as stack:
        yield stack


def cluster_of(stack: Stack) -> NatsCluster:
    assert isinstance(stack.nats, NatsCluster)
    return stack.nats


async def events_last_seq(stack: Stack) -> int:
    nc = await nats.connect(**stack.nats_options())
    try:
        info = await nc.jetstream(timeout=5).stream_info(subjects.EVENTS_STREAM)
        return int(info.state.last_seq)
    finally:
        await nc.close()


async def follow_events(stack: Stack, after: int, seen: list[tuple[int, str, dict[str, Any]]],
                        reconnects: list[int], index: int) -> None:
    """An SSE client that reconnects after any failure with the last id it saw."""
    last = after
    async with aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as api:
        while True:
            try:
                async for event_id, kind, data in sse_events(
                        api, headers={"Last-Event-ID": str(last)}):
                    last = int(event_id)
                    seen.append((last, kind, data))
            except (aiohttp.ClientError, AssertionError, TimeoutError, ValueError):
                pass  # the gateway answered an error or the stream broke: resume
            reconnects[index] += 1
            await asyncio.sleep(0.2)


async def create_many(stack: Stack, run: Run, prefix: str) -> None:
    """``CREATES`` creates from ``CLIENTS`` clients, each retrying 5xx with its key."""
    async def client(number: int) -> None:
        async with aiohttp.ClientSession(base_url=stack.api_url,
                                         headers=stack.headers()) as api:
            for i in range(CREATES // CLIENTS):
                body = {"name": f"{prefix}-{number}-{i}", **VM}
                answer = await create_until_answered(api, body, key=str(uuid.uuid4()))
                assert answer is not None
                run.answered.append(answer["id"])

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))


async def wait_answered(run: Run, count: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(run.answered) < count:
        assert time.monotonic() < deadline, f"only {len(run.answered)} creates answered"
        await asyncio.sleep(0.05)


async def poll(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float = 60.0
               ) -> float:
    """Seconds until ``check()`` holds."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < timeout_s, f"{what}: not within {timeout_s:g} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def kill_and_rejoin(cluster: NatsCluster, victim: NatsServer, run: Run, label: str,
                          leader_of: Callable[[], Awaitable[str]]) -> None:
    """kill -9 ``victim`` (a leader); time the new election, restart it, time its catch-up."""
    await victim.kill()

    async def new_leader() -> bool:
        try:
            leader = await leader_of()
        except RuntimeError:
            return False
        return bool(leader) and leader != victim.name

    run.timings[f"{label}_election_s"] = await poll(f"{label}: new leader", new_leader)
    await victim.start()
    run.timings[f"{label}_catch_up_s"] = await poll(
        f"{label}: {victim.name} caught up", lambda: cluster.healthy(victim))


async def wait_all_running(stack: Stack, ids: list[str], timeout_s: float = 90.0) -> dict[
        str, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as api:
        while True:
            records: dict[str, dict[str, Any]] = {}
            with contextlib.suppress(aiohttp.ClientError):
                for vm_id in ids:
                    async with api.get(f"/v1/vms/{vm_id}") as response:
                        if response.status == 200:
                            records[vm_id] = await response.json()
            states = Counter(r["state"] for r in records.values())
            if states.get("running", 0) == len(ids):
                return records
            assert "error" not in states, [r.get("error") for r in records.values()
                                           if r["state"] == "error"]
            assert time.monotonic() < deadline, f"not all running: {states}"
            await asyncio.sleep(0.25)


async def _all_announced(run: Run) -> bool:
    announced = {d["vm_id"] for _, kind, d in run.seen[0]
                 if kind == "vm.state_changed" and d["state"] == "running"}
    return announced >= set(run.answered)


async def wait_sse_caught_up(run: Run, last_seq: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while any(not seen or seen[-1][0] < last_seq for seen in run.seen):
        assert time.monotonic() < deadline, (
            f"SSE clients behind {last_seq}: {[s[-1][0] if s else 0 for s in run.seen]}")
        await asyncio.sleep(0.1)


async def run_through(stack: Stack, prefix: str,
                      disrupt: Callable[[Run], Awaitable[None]]) -> Run:
    """50 creates with SSE clients following, ``disrupt`` meanwhile; then every check."""
    run = Run(seen=[[] for _ in range(SSE_CLIENTS)], reconnects=[0] * SSE_CLIENTS)
    start_seq = await events_last_seq(stack)
    followers = [asyncio.create_task(follow_events(stack, start_seq, run.seen[i],
                                                   run.reconnects, i))
                 for i in range(SSE_CLIENTS)]
    try:
        started = time.monotonic()
        creating = asyncio.create_task(create_many(stack, run, prefix))
        await disrupt(run)
        await creating
        records = await wait_all_running(stack, run.answered)
        run.timings["all_running_s"] = time.monotonic() - started
        # A record says running a moment before its event is stored (the agent writes, then
        # announces; through an election that announcement may be retried for seconds): the
        # last sequence is taken once every VM's running event is there.
        await poll("every VM's running event", lambda: _all_announced(run))
        await poll("every server current", lambda: _all_healthy(cluster_of(stack)))
        end_seq = await events_last_seq(stack)
        await wait_sse_caught_up(run, end_seq)
    finally:
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)

    # No lost command and no duplicate: 50 answers, 50 distinct VMs, each running once.
    assert len(run.answered) == CREATES and len(set(run.answered)) == CREATES
    assert {r["name"] for r in records.values()} == {
        f"{prefix}-{c}-{i}" for c in range(CLIENTS) for i in range(CREATES // CLIENTS)}
    for seen in run.seen:
        # Every event once, in order, none missing: the ids are the stream's sequence.
        ids = [event_id for event_id, _, _ in seen]
        assert ids == list(range(start_seq + 1, end_seq + 1)), _gaps(ids, start_seq, end_seq)
        running = Counter(d["vm_id"] for _, kind, d in seen
                          if kind == "vm.state_changed" and d["state"] == "running")
        assert running == dict.fromkeys(run.answered, 1), {
            k: v for k, v in running.items() if v != 1}
    for vm_id, record in records.items():
        vm_dir = stack.node_data_dir(record["node"]) / "images" / vm_id
        files = sorted(p.name for p in vm_dir.iterdir())
        assert files.count("disk.qcow2") == 1, files
        assert not [f for f in files if f.startswith(".") or f.endswith(".tmp")], files
    for node in NODES:  # no VM directory beyond the 50 records
        made = {p.name for p in (stack.node_data_dir(node) / "images").iterdir()}
        assert made == {v for v, r in records.items() if r["node"] == node}
    print(f"\n{prefix}: {run.timings} sse reconnects {run.reconnects}")
    return run


async def _all_healthy(cluster: NatsCluster) -> bool:
    return all([await cluster.healthy(m) for m in cluster.members])


def _gaps(ids: list[int], first: int, last: int) -> str:
    expected = set(range(first + 1, last + 1))
    return (f"missing {sorted(expected - set(ids))[:20]}, repeated "
            f"{[i for i, n in Counter(ids).items() if n > 1][:20]}, {len(ids)} seen")


async def test_killing_the_meta_leader_then_the_commands_leader_loses_and_repeats_nothing(
        tmp_path: Path) -> None:
    async with cluster_stack(tmp_path / "s") as stack:
        cluster = cluster_of(stack)

        async def disrupt(run: Run) -> None:
            await wait_answered(run, 10)
            meta = cluster.member(await cluster.meta_leader())
            await kill_and_rejoin(cluster, meta, run, "meta_leader", cluster.meta_leader)
            await wait_answered(run, 30)
            commands = cluster.member(await cluster.stream_leader(subjects.COMMANDS_STREAM))
            await kill_and_rejoin(
                cluster, commands, run, "commands_leader",
                lambda: cluster.stream_leader(subjects.COMMANDS_STREAM))

        run = await run_through(stack, "kill", disrupt)
        assert {"meta_leader_election_s", "commands_leader_election_s"} <= set(run.timings)
        assert not stack.dead_services()  # services rode it out: reconnected, not restarted


async def test_a_rolling_restart_of_all_three_servers_loses_and_repeats_nothing(
        tmp_path: Path) -> None:
    async with cluster_stack(tmp_path / "s") as stack:
        cluster = cluster_of(stack)

        async def disrupt(run: Run) -> None:
            # One at a time, each caught up before the next goes (what the PodDisruptionBudget
            # and readiness on /healthz do on Kubernetes).
            for number, member in enumerate(cluster.members, start=1):
                await wait_answered(run, number * 12)
                await member.stop()
                await member.start()
                run.timings[f"{member.name}_catch_up_s"] = await poll(
                    f"{member.name} caught up", lambda m=member: cluster.healthy(m))

        await run_through(stack, "roll", disrupt)
        assert not stack.dead_services()
