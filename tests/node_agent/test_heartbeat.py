"""The heartbeat at scale (issue 11 row 13): counts and a digest, never every VM id, so the beat
of a node with 10,000 VMs (what one node's allocation record holds) stays ~1 KiB."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats
from nats.js import JetStreamContext

from limiquantix.common import nats_auth, nats_client, subjects
from limiquantix.common.allocations import NodeAllocation, VmShare, allocation_encoder
from limiquantix.common.model import utcnow
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.nodes import node_decoder, vm_digest
from limiquantix.common.vm_store import encode_record
from limiquantix.common.vms import VmRecord
from limiquantix.node_agent.heartbeat import Heartbeat
from limiquantix.node_agent.record_view import NodeRecords
from tests.support.node_agent import agent_settings

VMS = 10_000
PUTS_IN_FLIGHT = 500


async def _fill(server: NatsServer, node_id: str) -> set[str]:
    """10,000 VM records placed on ``node_id``, written as the gateway writes them: each
    reserved in the node's allocation record, then its record."""
    async with nats_client.connect(server.url, name="test",
                                   creds=str(server.creds_for(nats_auth.API))) as nc:
        js = nc.jetstream()
        await nats_client.ensure_jetstream(js, heartbeat_interval_s=5.0)
        vms = await nats_client.bucket(js, subjects.VMS_BUCKET)
        now = utcnow()
        ids = [str(uuid.uuid4()) for _ in range(VMS)]
        allocations = await nats_client.bucket(js, subjects.ALLOCATIONS_BUCKET)
        await allocations.put(node_id, allocation_encoder.encode(NodeAllocation(
            vms={vm_id: VmShare(vcpus=1, memory_mib=64) for vm_id in ids})))
        for start in range(0, VMS, PUTS_IN_FLIGHT):
            await asyncio.gather(*(
                vms.put(vm_id, encode_record(VmRecord(
                    id=vm_id, name=f"vm-{i}", node=node_id, vcpus=1, memory_mib=64,
                    disk_gib=1, created_at=now, updated_at=now)))
                for i, vm_id in enumerate(ids[start:start + PUTS_IN_FLIGHT], start)))
        return set(ids)


@asynccontextmanager
async def node_view(server: NatsServer, node_id: str,
                    ready_timeout_s: float) -> AsyncIterator[tuple[JetStreamContext, NodeRecords]]:
    """The node's own connection (its identity) and its record view, initial records read."""
    await server.add_node(node_id)
    node = await nats.connect(**server.connect_options(nats_auth.node_identity(node_id)))
    try:
        js = node.jetstream()
        records = NodeRecords(js, node_id)
        watching = asyncio.create_task(records.run())
        try:
            await asyncio.wait_for(records.ready.wait(), ready_timeout_s)
            yield js, records
        finally:
            watching.cancel()
    finally:
        await node.drain()


async def test_a_heartbeat_with_10000_vms_stays_small(nats_server: NatsServer,
                                                      tmp_path: Path) -> None:
    settings = agent_settings(nats_server.url, tmp_path / "node")
    node_id = settings.effective_node_id
    ids = await _fill(nats_server, node_id)
    nc = await nats.connect(**nats_server.connect_options(nats_auth.API))
    try:
        async with node_view(nats_server, node_id, ready_timeout_s=60) as (js, records):
            assert len(records.all()) == VMS
            nodes = await nats_client.bucket(js, subjects.NODES_BUCKET)
            await Heartbeat(settings, nodes, records, node_id=node_id, virt_type="test").beat()
            entry = await (await nats_client.bucket(nc.jetstream(), subjects.NODES_BUCKET)).get(
                node_id)
        assert entry.value is not None
        assert len(entry.value) < 4096  # every id would be ~400 KB
        status = node_decoder.decode(entry.value)
        assert status.vm_count == VMS and status.allocated_vcpus == VMS
        assert status.vm_digest == vm_digest(ids) and status.vm_ids == ()
    finally:
        await nc.drain()


async def test_a_heartbeat_stops_when_cancelled_just_as_a_change_wakes_it(
        nats_server: NatsServer, tmp_path: Path) -> None:
    """The agent's stop cancels the heartbeat loop; a cancel that lands in the same loop step
    as the wake-up must still end it (Python 3.11's wait_for returned the wake-up and dropped
    the cancel, and the agent's stop hung on this task)."""
    settings = agent_settings(nats_server.url, tmp_path / "node")
    node_id = settings.effective_node_id
    async with nats_client.connect(nats_server.url, name="test",
                                   creds=str(nats_server.creds_for(nats_auth.API))) as nc:
        await nats_client.ensure_jetstream(nc.jetstream(), heartbeat_interval_s=5.0)
    async with node_view(nats_server, node_id, ready_timeout_s=10) as (js, records):
        nodes = await nats_client.bucket(js, subjects.NODES_BUCKET)
        for steps in range(8):  # the cancel lands 0..7 loop steps after the wake-up
            heartbeat = Heartbeat(settings, nodes, records, node_id=node_id, virt_type="test")
            beating = asyncio.create_task(heartbeat.run())
            for _ in range(50):  # let it beat once and settle into its wait
                await asyncio.sleep(0.01)
            heartbeat.nudge()
            for _ in range(steps):
                await asyncio.sleep(0)
            beating.cancel()
            done, _ = await asyncio.wait([beating], timeout=3)
            assert done, f"the heartbeat ignored a cancel {steps} steps after its wake-up"
