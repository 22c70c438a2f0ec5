"""This node's VM records, kept in memory by watching just their keys in the ``vms`` bucket.

Heartbeats and reconciliation read it instead of scanning the bucket every few seconds; anything
that changes a record re-reads it from the bucket first (the view may be a moment behind).

The view watches only the keys of the VMs this node has (``common.kv_view`` with ``keys``), not
the whole bucket: with every agent watching everything, each VM record write reached every node
(O(nodes x writes); at 1,000 nodes the agents fell behind their heartbeats, issue 16). The keys
followed are the union of:

- the node's allocation record ``lq_allocations/<node>`` (watched: one key), which the gateway
  writes *before* it writes the record of a VM placed here, so a new VM is followed before its
  record exists;
- the VMs the node receives a command for (``follow_vm``): the command names the VM, whoever
  placed it; and the VM directories in its data dir at start (what it held before a restart,
  reserved or not). Each is followed until its record arrives (then the next point keeps
  it) or for ``PROBE_KEEP_S`` (a record that names another node, or is gone);
- the VMs in the view (a record stays followed until it is deleted or names another node, even
  once its share is released, e.g. a create that failed before its domain existed).

The keys are split in shards of at most ``SHARD_KEYS``, one ordered consumer each (filtered
on its keys' subjects). The set grows at once: a new key goes to the last shard, whose consumer
is replaced by one on its new keys (each key's last value, then its changes), or to a new shard.
It shrinks lazily: a key no longer wanted leaves when its shard is next rebuilt, a shard with
no wanted key is stopped; meanwhile it costs nothing (a deleted VM's key is never written).
Cost per VM placed here: one consumer of <= ``SHARD_KEYS`` keys replaced, a few ms.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from pathlib import Path

import nats.errors
import structlog
from nats.js import JetStreamContext

from limiquantix.common import subjects
from limiquantix.common.allocations import NodeAllocation, allocation_decoder
from limiquantix.common.ids import is_vm_id
from limiquantix.common.kv_view import KvView
from limiquantix.common.vm_store import decode_record
from limiquantix.common.vms import VmRecord
from limiquantix.node_agent.libvirt_host import domain_uuid

log = structlog.get_logger()

# A node's watches only confirm what it mostly learns otherwise (commands, its allocation):
# a slower idle heartbeat than the gateway's 1 s makes an idle agent cheaper (at 1,000 agents,
# 2,000 heartbeats a second fewer), at the price of noticing a lost consumer ~10 s later.
NODE_WATCH_HEARTBEAT_S = 5.0
# Creates placed on one node in a burst: one new consumer for all of them.
FOLLOW_COALESCE_S = 0.05
# Keys per consumer. nats-server checks a consumer's filter subjects against each other when it
# creates it: measured 27 ms for 100 keys, 0.46 s for 1,000, 3.1 s for 2,000. So a node's keys
# are split in shards and a new VM rebuilds only the last one (a few ms, <= this many
# records sent again).
SHARD_KEYS = 32
FOLLOW_RETRY_S = 1.0
# How long a VM named by a command (or a directory found at start) is followed without its
# record arriving here: the record is written before the command is sent, so this only bounds
# what a stray command (a VM deleted meanwhile, or on another node) leaves in the set.
PROBE_KEEP_S = 60.0


class NodeAllocationView(KvView[NodeAllocation]):
    """This node's allocation record (one key); ``changed`` is set when it changes."""

    def __init__(self, js: JetStreamContext, node_id: str) -> None:
        super().__init__(js, subjects.ALLOCATIONS_BUCKET, allocation_decoder.decode, ttl_s=0,
                         keys=(node_id,), idle_heartbeat_s=NODE_WATCH_HEARTBEAT_S)
        self._node_id = node_id
        self.changed = asyncio.Event()

    def vm_ids(self) -> set[str]:
        """The VMs reserved on this node."""
        value = self.get(self._node_id)
        return set(value.vms) if value is not None else set()

    def _on_change(self, key: str, old: NodeAllocation | None,
                   new: NodeAllocation | None) -> None:
        self.changed.set()


def local_vm_ids(data_dir: Path) -> set[str]:
    """The VM ids that have a directory under ``<data_dir>/images/``."""
    try:
        names = os.listdir(data_dir / "images")
    except FileNotFoundError:
        return set()
    return {name for name in names if is_vm_id(name)}


class _Shard(KvView[VmRecord]):
    """Some of the node's VM records: one consumer filtered on at most ``SHARD_KEYS`` keys."""

    def __init__(self, owner: NodeRecords, js: JetStreamContext, keys: Iterable[str]) -> None:
        super().__init__(js, subjects.VMS_BUCKET, decode_record, ttl_s=0, keys=keys,
                         idle_heartbeat_s=NODE_WATCH_HEARTBEAT_S)
        self._owner = owner

    def held(self) -> set[str]:
        return set(self._entries)

    @property
    def watching(self) -> bool:
        """False until subscribed (or after a subscription failed: NATS away)."""
        return self._sub is not None

    def _keep(self, key: str, value: VmRecord) -> bool:
        return self._owner._keep(key, value)

    def _on_change(self, key: str, old: VmRecord | None, new: VmRecord | None) -> None:
        self._owner._on_change(key, old, new)


class NodeRecords:
    """The records whose ``node`` is this node, by VM id (see the module docstring)."""

    def __init__(self, js: JetStreamContext, node_id: str, *,
                 local: Iterable[str] = ()) -> None:
        self._js = js
        self._node_id = node_id
        self._shards: list[_Shard] = []
        self._by_domain: dict[str, str] = {}
        started = time.monotonic()
        self._probes: dict[str, float] = {v: started for v in local if is_vm_id(v)}
        self.allocation = NodeAllocationView(js, node_id)
        self._grow = asyncio.Event()
        self.ready = asyncio.Event()  # set once the allocation and the records are loaded
        self.changed = asyncio.Event()  # set when a VM arrives on or leaves this node

    def all(self) -> list[VmRecord]:
        return [record for shard in self._shards for record in shard.values()]

    def vm_for_domain(self, dom_uuid: str) -> str | None:
        """The VM id of a domain UUID (they differ only when a VM id is not a UUID)."""
        return self._by_domain.get(dom_uuid)

    @property
    def following(self) -> set[str]:
        """The keys watched now."""
        return {key for shard in self._shards for key in shard.following or ()}

    @property
    def consumers(self) -> int:
        """Consumers on the VM records' bucket (one per shard)."""
        return len(self._shards)

    def follow_vm(self, vm_id: str) -> None:
        """Follow ``vm_id`` too (a command for it arrived); the view catches up at once."""
        if not is_vm_id(vm_id) or vm_id in self._probes or vm_id in self._held():
            return
        self._probes[vm_id] = time.monotonic()
        if vm_id not in self.following:
            self._grow.set()

    def _held(self) -> set[str]:
        return {key for shard in self._shards for key in shard.held()}

    def _wanted(self) -> set[str]:
        return self.allocation.vm_ids() | set(self._probes) | self._held()

    async def run(self) -> None:
        """Watch this node's allocation and its VMs' records until cancelled; ``ready`` is set
        once both are loaded."""
        try:
            await self.allocation.subscribe()
            await self.allocation.ready.wait()
            await self._grow_to(self._wanted())
            await asyncio.gather(*(shard.ready.wait() for shard in self._shards))
            self.ready.set()
            while True:
                await wait_either(self.allocation.changed, self._grow)
                await asyncio.sleep(FOLLOW_COALESCE_S)
                self.allocation.changed.clear()
                self._grow.clear()
                expired = time.monotonic() - PROBE_KEEP_S
                self._probes = {k: at for k, at in self._probes.items() if at > expired}
                try:
                    await self._grow_to(self._wanted())
                except (nats.errors.Error, TimeoutError) as exc:  # NATS away: try again
                    log.warning("following this node's VM records failed; retrying",
                                error=repr(exc))
                    self._grow.set()
                    await asyncio.sleep(FOLLOW_RETRY_S)
        finally:
            await self.allocation.stop()
            for shard in self._shards:
                await shard.stop()

    async def _grow_to(self, wanted: set[str]) -> None:
        """Follow every key of ``wanted``: new keys go to the last shard while it has room
        (only it gets a new consumer), then to new shards; shards left with no wanted key are
        stopped. Keys no longer wanted leave their shard when it is rebuilt."""
        for shard in [s for s in self._shards if not (s.following or frozenset()) & wanted]:
            await shard.stop()
            self._shards.remove(shard)
        for shard in self._shards:
            if not shard.watching:  # its subscription failed (NATS away): subscribe again
                await shard.subscribe()
        missing = sorted(wanted - self.following)
        if missing and self._shards:
            last = self._shards[-1]
            keep = (last.following or frozenset()) & wanted
            room = SHARD_KEYS - len(keep)
            if room > 0:
                await last.follow(keep | set(missing[:room]))
                missing = missing[room:]
        for start in range(0, len(missing), SHARD_KEYS):
            shard = _Shard(self, self._js, missing[start:start + SHARD_KEYS])
            self._shards.append(shard)
            await shard.subscribe()

    def _keep(self, key: str, value: VmRecord) -> bool:
        if value.id != key or not is_vm_id(key):
            # Its id names files and the domain here: one not from the gateway is not acted on.
            log.warning("VM record with an invalid id ignored", key=key[:80])
            return False
        return value.node == self._node_id

    def _on_change(self, key: str, old: VmRecord | None, new: VmRecord | None) -> None:
        if new is None:
            self._by_domain.pop(domain_uuid(key), None)
        else:
            self._by_domain[domain_uuid(key)] = key
            self._probes.pop(key, None)  # followed as one of the view's own from now on
        if (old is None) != (new is None):
            self.changed.set()


async def wait_either(first: asyncio.Event, second: asyncio.Event) -> None:
    """Return when either event is set (the heartbeat waits so too)."""
    waits = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
