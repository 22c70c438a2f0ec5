"""Reserving capacity on a node by compare-and-set, and keeping the reservations true.

Each node has one :class:`~limiquantix.common.allocations.NodeAllocation` in the
``lq_allocations`` bucket. A reservation reads it (from the watched view first: usually current,
so one round trip), checks the node's capacity, and writes it back with ``last=revision``; a
concurrent writer (this gateway or another) makes the write fail, and the step is made again on
the value just read from the bucket. So whatever the number of gateways, a node never holds more
than its capacity.

Reservations follow the VM records:

- a VM record that leaves its node or stops taking capacity (deleted, a create that failed
  before its domain existed, or made a template) releases its share at once (the VM view
  tells us; every gateway does it, and a release is idempotent);
- :meth:`AllocationStore.reconcile` (every ``RECONCILE_EVERY_S``, and once at start) rebuilds
  each record from the VM records: a share without a VM record that holds resources is dropped
  once older than ``SHARE_GRACE_S`` (a gateway that crashed between its reservation and its
  record write leaks nothing for longer), a VM record holding resources without a share gets one
  (records written before this bucket existed, or a release that raced a retried create).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import nats.errors
import structlog
from aiohttp import web
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from limiquantix.api.errors import NoCapacity
from limiquantix.common import nats_client, subjects
from limiquantix.common.allocations import NodeAllocation, VmShare, allocation_decoder
from limiquantix.common.errors import NotFound, Unavailable
from limiquantix.common.kv_records import KvRecords
from limiquantix.common.kv_view import KvView
from limiquantix.common.nodes import NodeStatus
from limiquantix.common.vm_store import VmStore
from limiquantix.common.vms import VmRecord

if TYPE_CHECKING:
    from limiquantix.api.kv_view import VmView

log = structlog.get_logger()

RECONCILE_EVERY_S = 5.0
SHARE_GRACE_S = 30.0  # a reservation younger than this may still be writing its VM record
CAS_ATTEMPTS = 50  # conflicts on one node before giving up (each re-reads the record)

Change = Callable[[NodeAllocation], NodeAllocation | None]  # None: nothing to write
Allocation = tuple[int, int]  # (vCPUs, memory MiB)


class AllocationContention(Unavailable):
    """A node's allocation record kept changing under us."""

    code = "allocation_contention"
    default_hint = "Too many creates raced for the same node; retry the request."


class AllocationView(KvView[NodeAllocation]):
    """The watched allocation records, plus this gateway's reservations in flight."""

    def __init__(self, js: JetStreamContext) -> None:
        super().__init__(js, subjects.ALLOCATIONS_BUCKET, allocation_decoder.decode, ttl_s=0)
        self._held: dict[str, Allocation] = {}

    def entry(self, node_id: str) -> tuple[NodeAllocation, int] | None:
        found = self._entries.get(node_id)
        return (found[0], found[1]) if found else None

    def keys(self) -> list[str]:
        return list(self._entries)

    def put(self, node_id: str, value: NodeAllocation, revision: int) -> None:
        """Apply one of our own writes at once (the watch confirms it later)."""
        self._apply(node_id, value, revision, time.time())

    def hold(self, node_id: str, vcpus: int, memory_mib: int) -> None:
        """Count a reservation not yet written (no await between ranking and this)."""
        held_vcpus, held_memory = self._held.get(node_id, (0, 0))
        self._held[node_id] = (held_vcpus + vcpus, held_memory + memory_mib)

    def unhold(self, node_id: str, vcpus: int, memory_mib: int) -> None:
        held_vcpus, held_memory = self._held.get(node_id, (0, 0))
        left = (held_vcpus - vcpus, held_memory - memory_mib)
        if left == (0, 0):
            self._held.pop(node_id, None)
        else:
            self._held[node_id] = left

    def used(self) -> dict[str, Allocation]:
        """Node id -> (vCPUs, MiB) reserved, as far as this gateway knows (ranking only)."""
        used = {node: (value.vcpus, value.memory_mib)
                for node, (value, _rev, _at) in self._entries.items()}
        for node, (vcpus, memory) in self._held.items():
            have_vcpus, have_memory = used.get(node, (0, 0))
            used[node] = (have_vcpus + vcpus, have_memory + memory)
        return used


class AllocationStore:
    """Compare-and-set on the allocation records (see the module docstring)."""

    def __init__(self, kv: KeyValue, view: AllocationView) -> None:
        self._records = KvRecords(kv, NodeAllocation)
        self.view = view
        self.conflicts = 0  # CAS writes refused because the record had changed (metric)
        self._tasks: set[asyncio.Task[None]] = set()

    async def _read(self, node_id: str) -> tuple[NodeAllocation, int]:
        try:
            return await self._records.get(node_id)
        except NotFound:  # never written, or deleted: the next write creates it
            return NodeAllocation(), 0

    async def update(self, node_id: str, change: Change) -> NodeAllocation:
        """Apply ``change`` to the node's record with compare-and-set, retried on conflict;
        whatever ``change`` raises (NoCapacity) is raised."""
        known = self.view.entry(node_id)
        current, revision = known if known is not None else await self._read(node_id)
        # KvRecords.update would do this loop, but with its own read first and its retry count;
        # here the view saves the read, and conflicts are many by design (gateways race for the
        # best node), so they get jitter and a metric.
        for attempt in range(CAS_ATTEMPTS):
            new = change(current)
            if new is None:
                return current
            if revision == 0:
                written = await self._records.create(node_id, new)
            else:
                written = await self._records.replace(node_id, new, revision)
            if written is None:  # someone wrote since we read
                self.conflicts += 1
                # Jitter: racing writers on one node would otherwise collide again in step.
                await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
                current, revision = await self._read(node_id)
                continue
            self.view.put(node_id, new, written)
            return new
        raise AllocationContention(
            f"the allocation of node {node_id!r} changed {CAS_ATTEMPTS} times while we wrote it",
            node=node_id)

    async def reserve(self, node: NodeStatus, vm_id: str, vcpus: int, memory_mib: int) -> None:
        """Give ``vm_id`` exactly this share of ``node`` (NoCapacity when growing past the
        node's capacity); repeating it changes nothing."""
        def change(current: NodeAllocation) -> NodeAllocation | None:
            old = current.vms.get(vm_id)
            if old is not None and (old.vcpus, old.memory_mib) == (vcpus, memory_mib):
                return None
            free_vcpus = node.capacity_vcpus - current.vcpus + (old.vcpus if old else 0)
            free_memory = node.capacity_memory_mib - current.memory_mib + (
                old.memory_mib if old else 0)
            growing = old is None or vcpus > old.vcpus or memory_mib > old.memory_mib
            if growing and (vcpus > free_vcpus or memory_mib > free_memory):
                raise NoCapacity(
                    f"node {node.id!r} has {free_memory} MiB and {free_vcpus} vCPUs free; "
                    f"the VM needs {memory_mib} MiB and {vcpus} vCPUs",
                    node=node.id, free_memory_mib=free_memory, free_vcpus=free_vcpus)
            share = VmShare(vcpus=vcpus, memory_mib=memory_mib, at=time.time())
            return NodeAllocation(vms={**current.vms, vm_id: share})
        await self.update(node.id, change)

    async def release(self, node_id: str, vm_id: str) -> None:
        """Drop ``vm_id``'s share of ``node_id`` (nothing when it holds none)."""
        def change(current: NodeAllocation) -> NodeAllocation | None:
            if vm_id not in current.vms:
                return None
            return NodeAllocation(vms={k: v for k, v in current.vms.items() if k != vm_id})
        await self.update(node_id, change)

    def share(self, node_id: str, vm_id: str) -> VmShare | None:
        known = self.view.get(node_id)
        return known.vms.get(vm_id) if known is not None else None

    # -- following the VM records ---------------------------------------------------------
    def on_record_change(self, old: VmRecord | None, new: VmRecord | None) -> None:
        """VM view hook: a VM that stopped holding its node's resources releases them."""
        if old is None or not old.takes_capacity or not old.node:
            return
        if new is not None and new.takes_capacity and new.node == old.node:
            return
        task = asyncio.get_running_loop().create_task(self._release_quietly(old.node, old.id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release_quietly(self, node_id: str, vm_id: str) -> None:
        try:
            await self.release(node_id, vm_id)
        except (nats.errors.Error, Unavailable) as exc:  # the reconciler finishes it later
            log.warning("allocation release failed; the reconciler retries", node=node_id,
                        vm_id=vm_id, error=repr(exc))

    async def reconcile(self, vms: VmView, store: VmStore, now: float | None = None) -> int:
        """Make every allocation record agree with the VM records; the number of records
        rewritten."""
        now = time.time() if now is None else now
        expected: dict[str, dict[str, tuple[int, int]]] = {}
        for vm in vms.values():
            if vm.takes_capacity and vm.node:
                expected.setdefault(vm.node, {})[vm.id] = (vm.vcpus, vm.memory_mib)
        rewritten = 0
        for node_id in sorted(set(expected) | set(self.view.keys())):
            want = expected.get(node_id, {})
            have = self.view.get(node_id) or NodeAllocation()
            stale = [vm_id for vm_id, share in have.vms.items()
                     if vm_id not in want and now - share.at >= SHARE_GRACE_S]
            gone = {vm_id for vm_id in stale if not await _holds(store, vm_id, node_id)}
            missing = {vm_id: size for vm_id, size in want.items() if vm_id not in have.vms}
            if not gone and not missing:
                continue
            await self.update(node_id, _rebuilt(gone, missing, now, _still_holds(vms, node_id)))
            rewritten += 1
            log.info("allocation reconciled with the VM records", node=node_id,
                     dropped=len(gone), added=len(missing))
        return rewritten


    async def run(self, vms: VmView, store: VmStore) -> None:
        """Reconcile every RECONCILE_EVERY_S until cancelled (a failed pass is retried)."""
        while True:
            await asyncio.sleep(RECONCILE_EVERY_S)
            try:
                await self.reconcile(vms, store)
            except (nats.errors.Error, Unavailable, OSError) as exc:
                log.warning("allocation reconcile failed; next pass retries", error=repr(exc))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _holds(store: VmStore, vm_id: str, node_id: str) -> bool:
    """Does the stored record of ``vm_id`` (the truth, not the view) hold room on the node?"""
    found = await store.find(vm_id)
    return found is not None and found.takes_capacity and found.node == node_id


def _still_holds(vms: VmView, node_id: str) -> Callable[[str], bool]:
    def holds(vm_id: str) -> bool:
        vm = vms.get(vm_id)
        return vm is not None and vm.takes_capacity and vm.node == node_id
    return holds


def _rebuilt(gone: set[str], missing: dict[str, tuple[int, int]], now: float,
             still_holds: Callable[[str], bool]) -> Change:
    def change(current: NodeAllocation) -> NodeAllocation | None:
        vms = {k: v for k, v in current.vms.items() if k not in gone}
        for vm_id, (vcpus, memory) in missing.items():
            # Read when writing: a VM deleted since the pass began (its release ran) is not
            # given its share back.
            if still_holds(vm_id):
                vms.setdefault(vm_id, VmShare(vcpus=vcpus, memory_mib=memory, at=now))
        return None if vms == current.vms else NodeAllocation(vms=vms)
    return change


async def ensure_bucket(js: JetStreamContext) -> KeyValue:
    """The allocations bucket: laid out by ``nats_client.ensure_jetstream`` at the gateway's
    start like every bucket (its replica count and consumer limit included)."""
    return await nats_client.bucket(js, subjects.ALLOCATIONS_BUCKET)


ALLOCATIONS = web.AppKey("allocations", AllocationStore)
