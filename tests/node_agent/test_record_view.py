"""The node's record view follows only its own VMs (issue 16): the VMs reserved on it (its
allocation record), those it gets a command for, and those it held before a restart; writes to
every other VM record never reach it. On a real nats-server, as the node's own identity."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.kv import KeyValue

from limiquantix.common import nats_auth, nats_client, subjects
from limiquantix.common.allocations import (
    NodeAllocation,
    VmShare,
    allocation_decoder,
    allocation_encoder,
)
from limiquantix.common.model import utcnow
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.vm_store import encode_record
from limiquantix.common.vms import VmRecord
from limiquantix.node_agent import record_view
from limiquantix.node_agent.main import cancel_until_done
from limiquantix.node_agent.record_view import NodeRecords
from tests.support.waits import eventually

NODE = "node-a"


@dataclass
class Fleet:
    """The gateway's side (writes records and allocations) and one node's connection."""

    vms: KeyValue
    allocations: KeyValue
    node: Client
    node_errors: list[Exception]

    async def record(self, vm_id: str, node: str = NODE) -> None:
        now = utcnow()
        await self.vms.put(vm_id, encode_record(VmRecord(
            id=vm_id, name=f"vm-{vm_id[:8]}", node=node, vcpus=1, memory_mib=64, disk_gib=1,
            created_at=now, updated_at=now)))

    async def reserve(self, vm_ids: list[str], node: str = NODE) -> None:
        """The node's allocation becomes exactly ``vm_ids`` (as the gateway's CAS writes it)."""
        await self.allocations.put(node, allocation_encoder.encode(NodeAllocation(
            vms={vm_id: VmShare(vcpus=1, memory_mib=64) for vm_id in vm_ids})))

    async def place(self, n: int, node: str = NODE) -> list[str]:
        """``n`` VMs placed as the gateway places them: reserved first, then their record."""
        ids = [str(uuid.uuid4()) for _ in range(n)]
        current = await self.reserved(node)
        await self.reserve([*current, *ids], node)
        await asyncio.gather(*(self.record(vm_id, node) for vm_id in ids))
        return ids

    async def reserved(self, node: str) -> list[str]:
        with contextlib.suppress(Exception):
            entry = await self.allocations.get(node)
            return list(allocation_decoder.decode(entry.value or b"{}").vms)
        return []


@pytest.fixture
async def fleet(nats_server: NatsServer) -> AsyncIterator[Fleet]:
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    async with nats_client.connect(nats_server.url, name="gateway",
                                   creds=str(nats_server.creds_for(nats_auth.API))) as gw:
        js = gw.jetstream()
        await nats_client.ensure_jetstream(js, heartbeat_interval_s=5.0)
        await nats_server.add_node(NODE)
        node = await nats.connect(**nats_server.connect_options(nats_auth.node_identity(NODE)),
                                  error_cb=on_error)
        try:
            yield Fleet(vms=await nats_client.bucket(js, subjects.VMS_BUCKET),
                        allocations=await nats_client.bucket(js, subjects.ALLOCATIONS_BUCKET),
                        node=node, node_errors=errors)
        finally:
            await node.close()


@contextlib.asynccontextmanager
async def watching(fleet: Fleet, local: tuple[str, ...] = ()) -> AsyncIterator[NodeRecords]:
    records = NodeRecords(fleet.node.jetstream(), NODE, local=local)
    task = asyncio.create_task(records.run())
    try:
        await asyncio.wait_for(records.ready.wait(), 10)
        yield records
    finally:
        # As the agent stops it: a cancel can be lost inside nats-py's wait_for on Python 3.11
        # (seen here once: a 60 s timeout in this context's exit).
        await asyncio.wait_for(cancel_until_done([task]), 30)


def ids_of(records: NodeRecords) -> set[str]:
    return {r.id for r in records.all()}


async def test_a_node_sees_the_vms_placed_on_it_and_no_write_to_any_other(
        fleet: Fleet) -> None:
    mine = await fleet.place(3)
    await fleet.place(3, node="node-b")
    async with watching(fleet) as records:
        assert ids_of(records) == set(mine)
        later = await fleet.place(2)  # reserved, then written: followed as they come
        await eventually(lambda: ids_of(records) == {*mine, *later}, what="new VMs followed")
        await asyncio.sleep(0.2)  # deliberate: let the new consumer settle
        before = fleet.node.stats["in_msgs"]
        others = await fleet.place(100, node="node-b")
        for vm_id in others:  # each VM elsewhere written again, as a create does
            await fleet.record(vm_id, node="node-b")
        await fleet.node.flush()
        # The 200 writes elsewhere never reach this node (a whole-bucket watch got each one):
        # only idle heartbeats did, one per watch every 5 s.
        assert fleet.node.stats["in_msgs"] - before < 20
        assert ids_of(records) == {*mine, *later}


async def test_a_vm_commanded_here_is_followed_without_a_reservation(fleet: Fleet) -> None:
    vm_id = str(uuid.uuid4())
    await fleet.record(vm_id)  # e.g. written before the allocations bucket existed
    async with watching(fleet) as records:
        assert ids_of(records) == set()
        records.follow_vm(vm_id)  # the command consumer does this for every command
        await eventually(lambda: ids_of(records) == {vm_id}, timeout_s=30,
                         what="the commanded VM followed")
        records.follow_vm("../../etc")  # not a VM id: never a key of ours
        assert "../../etc" not in records.following


async def test_after_a_restart_the_vms_with_files_here_are_followed(fleet: Fleet) -> None:
    """A record that holds nothing any more (a failed create) has no share, but its node may
    still have its files: the agent passes its VM directories at start."""
    vm_id = str(uuid.uuid4())
    await fleet.record(vm_id)
    async with watching(fleet, local=(vm_id,)) as records:
        assert ids_of(records) == {vm_id}


async def test_a_record_deleted_or_moved_away_leaves_and_changed_is_set(fleet: Fleet) -> None:
    gone, moved, kept = await fleet.place(3)
    async with watching(fleet) as records:
        records.changed.clear()
        await fleet.vms.purge(gone)  # as the node's delete does
        await fleet.record(moved, node="node-b")
        await eventually(lambda: ids_of(records) == {kept}, what="deleted and moved VMs gone")
        assert records.changed.is_set()
        # The gateway releases their shares; a new VM then rebuilds without them.
        await fleet.reserve([kept])
        new = await fleet.place(1)
        await eventually(lambda: ids_of(records) == {kept, *new}, what="the new VM followed")
        await eventually(lambda: records.following == {kept, *new}, what="keys pruned")


async def test_many_vms_are_followed_in_shards_and_emptied_shards_stop(fleet: Fleet) -> None:
    n = record_view.SHARD_KEYS * 2 + 5
    ids = await fleet.place(n)
    async with watching(fleet) as records:
        assert ids_of(records) == set(ids)
        assert records.consumers == 3
        for vm_id in ids:
            await fleet.vms.purge(vm_id)
        await fleet.reserve([])
        await eventually(lambda: not records.all(), what="every VM gone")
        new = await fleet.place(1)  # the next change drops the shards left with no VM
        await eventually(lambda: ids_of(records) == set(new) and records.consumers == 1,
                         what="one shard left")


async def test_a_node_watches_its_allocation_but_cannot_write_any(fleet: Fleet) -> None:
    js = fleet.node.jetstream(timeout=0.5)
    allocations = await js.key_value(subjects.ALLOCATIONS_BUCKET)
    with pytest.raises(nats.errors.TimeoutError):
        await allocations.put(NODE, b'{"vms":{}}')  # room for itself: refused
    await fleet.node.flush()
    assert any(f"$KV.{subjects.ALLOCATIONS_BUCKET}.{NODE}".lower() in str(e).lower()
               for e in fleet.node_errors)
