"""Where a new VM goes. Pure functions of the live nodes and the known VMs (unit-tested).

Policy:

1. An explicit ``node`` in the request wins. It must be online (a live entry in the ``nodes``
   bucket, i.e. heartbeated within the bucket TTL), else 422 ``unknown_node``; if the VM does not
   fit there, 409 ``no_capacity``. An explicit choice is never silently redirected.
2. Otherwise, among the online nodes where both the memory and the vCPUs fit, the one with the
   most free memory *after* the VM is placed; ties go to more free vCPUs after, then the node id
   (so the choice is deterministic). This spreads VMs, which keeps noisy neighbours apart.
3. No node fits: 409 ``no_capacity`` naming the largest free memory and vCPUs on offer.

A node's capacity is its physical figures times the allocation ratios, less the reserved host
memory (``LQ_CPU_ALLOCATION_RATIO`` 4.0, ``LQ_MEMORY_ALLOCATION_RATIO`` 1.0,
``LQ_RESERVED_HOST_MEMORY_MIB`` 512: Nova's defaults; the node computes it and heartbeats it).
A node's allocation is the sum of the VM records placed on it, whatever their state (a stopped
VM keeps its reservation, as in Nova) except a failed create that left nothing on the node
(``holds_resources`` false) and a template (it never runs again; ``VmRecord.takes_capacity``):
the records are the truth of what was placed, while a
heartbeat can lag a burst of creates.

Ranking reads views (cheap, maybe a moment behind); the decision is a reservation by
compare-and-set on the chosen node's allocation record (``allocation_store``): a candidate whose
record says it is full after all is skipped for the next one. So any number of gateways placing
at once never over-commit a node (tests/fleet/test_two_gateways_placement.py). A gateway counts
its own reservations in flight before it awaits anything, so its concurrent requests spread.

The API other routes use (all async, all take the app):

- :func:`place_and_reserve` — choose a node for a new VM and reserve its share there;
- :func:`reserve` — give a VM exactly this share of its node (a retried create; a resize calls
  it with the new size: only growth is checked against the free room);
- :func:`change` — the same with deltas (``vcpus_delta``, ``memory_mib_delta``) on what the VM
  holds now;
- :func:`release` — the VM no longer holds anything on its node (idempotent).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from aiohttp import web

from limiquantix.api.allocation_store import ALLOCATIONS, Allocation
from limiquantix.api.errors import NoCapacity, UnknownNode
from limiquantix.common.nodes import NodeStatus
from limiquantix.common.vms import VmRecord


@dataclasses.dataclass(frozen=True, kw_only=True)
class NodeLoad:
    """A node's capacity and what the VMs placed on it take."""

    node: NodeStatus
    vcpus: int
    memory_mib: int

    @property
    def free_vcpus(self) -> int:
        return self.node.capacity_vcpus - self.vcpus

    @property
    def free_memory_mib(self) -> int:
        return self.node.capacity_memory_mib - self.memory_mib

    def fits(self, vcpus: int, memory_mib: int) -> bool:
        return self.free_vcpus >= vcpus and self.free_memory_mib >= memory_mib

    @property
    def degraded(self) -> bool:
        """The node says it cannot run VMs right now (its libvirt connection is down)."""
        return any(w.code in DEGRADING_WARNINGS for w in self.node.warnings)


# Node warnings that keep automatic placement away (an explicit node still gets the VM: its
# command waits for the node to recover).
DEGRADING_WARNINGS = frozenset({"libvirt_disconnected"})


def allocations(vms: Iterable[VmRecord]) -> dict[str, Allocation]:
    """Node id -> the sum of the vCPUs and memory of its VMs that take capacity (not a failed
    create that left nothing, not a template)."""
    used: dict[str, Allocation] = {}
    for vm in vms:
        if not vm.takes_capacity:
            continue
        vcpus, memory = used.get(vm.node, (0, 0))
        used[vm.node] = (vcpus + vm.vcpus, memory + vm.memory_mib)
    return used


def loads(nodes: Iterable[NodeStatus], used: Mapping[str, Allocation]) -> dict[str, NodeLoad]:
    """Each online node's load: what the VM records placed on it take."""
    result = {}
    for node in nodes:
        vcpus, memory = used.get(node.id, (0, 0))
        result[node.id] = NodeLoad(node=node, vcpus=vcpus, memory_mib=memory)
    return result


def place(
    *, vcpus: int, memory_mib: int, nodes: Iterable[NodeStatus], used: Mapping[str, Allocation],
    explicit: str | None = None,
) -> str:
    """The id of the node the VM goes to (raises UnknownNode or NoCapacity)."""
    return ranked(vcpus=vcpus, memory_mib=memory_mib, nodes=nodes, used=used,
                  explicit=explicit)[0]


def ranked(
    *, vcpus: int, memory_mib: int, nodes: Iterable[NodeStatus], used: Mapping[str, Allocation],
    explicit: str | None = None,
) -> list[str]:
    """Every node the VM fits on, best first (raises UnknownNode or NoCapacity)."""
    by_node = loads(nodes, used)
    if explicit:
        load = by_node.get(explicit)
        if load is None:
            raise UnknownNode(
                f"node {explicit!r} is not online",
                node=explicit, online=sorted(by_node),
            )
        if not load.fits(vcpus, memory_mib):
            raise NoCapacity(
                f"node {explicit!r} has {load.free_memory_mib} MiB and {load.free_vcpus} vCPUs "
                f"free; the VM needs {memory_mib} MiB and {vcpus} vCPUs",
                hint=_capacity_hint(load.free_vcpus < vcpus, load.free_memory_mib < memory_mib),
                node=explicit, free_memory_mib=load.free_memory_mib,
                free_vcpus=load.free_vcpus,
            )
        return [explicit]
    fitting = [load for load in by_node.values()
               if load.fits(vcpus, memory_mib) and not load.degraded]
    if not fitting:
        raise _no_capacity(by_node, vcpus, memory_mib)
    # Most free memory after, then most free vCPUs after, then the id (deterministic ties).
    fitting.sort(key=lambda load: (-(load.free_memory_mib - memory_mib),
                                   -(load.free_vcpus - vcpus), load.node.id))
    return [load.node.id for load in fitting]


# --- reservations (compare-and-set on the node's allocation record) -------------------------

MAX_CANDIDATES = 8  # nodes tried, best first, before answering no_capacity


async def place_and_reserve(
    app: web.Application, *, vm_id: str, vcpus: int, memory_mib: int,
    nodes: Iterable[NodeStatus], explicit: str | None = None,
) -> str:
    """Choose a node for ``vm_id`` among ``nodes`` (the live ones) and reserve its share
    there; the node's id. NoCapacity / UnknownNode as :func:`ranked`, or when every candidate
    filled up meanwhile (its record, not the view, said so)."""
    store = app[ALLOCATIONS]
    live = {node.id: node for node in nodes}
    candidates = ranked(vcpus=vcpus, memory_mib=memory_mib, nodes=live.values(),
                        used=store.view.used(), explicit=explicit)
    refused: NoCapacity | None = None
    for node_id in candidates[:MAX_CANDIDATES]:
        store.view.hold(node_id, vcpus, memory_mib)  # before any await: our next request sees it
        try:
            await store.reserve(live[node_id], vm_id, vcpus, memory_mib)
            return node_id
        except NoCapacity as exc:  # another gateway (or request) took the room meanwhile
            refused = exc
        finally:
            store.view.unhold(node_id, vcpus, memory_mib)
    assert refused is not None
    if explicit:
        raise refused
    raise _no_capacity(loads(live.values(), store.view.used()), vcpus, memory_mib)


async def reserve(app: web.Application, *, node: NodeStatus, vm_id: str, vcpus: int,
                  memory_mib: int) -> None:
    """Give ``vm_id`` exactly this share of ``node`` (NoCapacity when growing past its room;
    repeating it changes nothing)."""
    await app[ALLOCATIONS].reserve(node, vm_id, vcpus, memory_mib)


async def change(app: web.Application, *, node: NodeStatus, vm: VmRecord, vcpus_delta: int = 0,
                 memory_mib_delta: int = 0) -> None:
    """Grow or shrink what ``vm`` holds on ``node`` by these deltas (a resize). Its current
    share is the base, else its record's size. NoCapacity when growing past the free room."""
    store = app[ALLOCATIONS]
    share = store.share(node.id, vm.id)
    vcpus, memory = (share.vcpus, share.memory_mib) if share else (vm.vcpus, vm.memory_mib)
    await store.reserve(node, vm.id, vcpus + vcpus_delta, memory + memory_mib_delta)


async def release(app: web.Application, *, node_id: str, vm_id: str) -> None:
    """``vm_id`` holds nothing on ``node_id`` any more (nothing happens when it held nothing)."""
    await app[ALLOCATIONS].release(node_id, vm_id)


def _no_capacity(by_node: dict[str, NodeLoad], vcpus: int, memory_mib: int) -> NoCapacity:
    need = f"{memory_mib} MiB and {vcpus} vCPUs"
    if not by_node:
        return NoCapacity(
            f"no node is online to place a VM needing {need}",
            hint="Start a node agent (`lq node list` shows the online ones).",
            free_memory_mib=0, free_vcpus=0,
        )
    degraded = sorted(load.node.id for load in by_node.values() if load.degraded)
    if len(degraded) == len(by_node):
        return NoCapacity(
            f"every online node is degraded ({', '.join(degraded)}: libvirt disconnected)",
            hint="Wait for the node to reconnect to libvirt (`lq node list` shows its warning), "
                 "or name it with `node` to queue the VM there.",
            free_memory_mib=0, free_vcpus=0, degraded=degraded)
    most_memory = max(by_node.values(), key=lambda load: load.free_memory_mib)
    most_vcpus = max(by_node.values(), key=lambda load: load.free_vcpus)
    return NoCapacity(
        f"no node has {need} free; the largest free memory is {most_memory.free_memory_mib} "
        f"MiB (node {most_memory.node.id!r}) and the most free vCPUs {most_vcpus.free_vcpus} "
        f"(node {most_vcpus.node.id!r})",
        hint=_capacity_hint(most_vcpus.free_vcpus < vcpus,
                            most_memory.free_memory_mib < memory_mib),
        free_memory_mib=most_memory.free_memory_mib, free_vcpus=most_vcpus.free_vcpus,
    )


def _capacity_hint(short_of_vcpus: bool, short_of_memory: bool) -> str:
    """What to do, naming the setting behind the resource that ran out."""
    settings = []
    if short_of_vcpus:
        settings.append("LQ_CPU_ALLOCATION_RATIO (vCPUs per physical CPU, default 4.0)")
    if short_of_memory:
        settings.append("LQ_MEMORY_ALLOCATION_RATIO / LQ_RESERVED_HOST_MEMORY_MIB")
    raise_it = f" or raise {' and '.join(settings)} on the node agent" if settings else ""
    return (f"Ask for less, delete unused VMs (`lq vm list`), add a node{raise_it}; "
            "`lq node list` shows each node's free capacity.")
