"""The node agent's Prometheus metrics, served on ``LQ_NODE_METRICS_PORT`` (0: off).

- capacity and allocation, set from each heartbeat's status (what placement reads);
- provisioning durations: the VM record's ``created_at`` (the gateway's POST) to the first
  ``running`` and to the first ``ready`` this agent records;
- the node's image cache: hits, misses and downloaded bytes;
- the command consumer: pending messages and redeliveries (gauges in ``common.metrics``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from limiquantix.common.model import utcnow
from limiquantix.common.nodes import NodeStatus
from limiquantix.common.vms import VmRecord, VmState

MIB = 1 << 20
GIB = 1 << 30

NODE_VCPUS = Gauge("lq_node_vcpus", "vCPUs of this node", ["node", "kind"])
NODE_MEMORY = Gauge("lq_node_memory_bytes", "Memory of this node", ["node", "kind"])
NODE_VMS = Gauge("lq_node_vms", "VM records placed on this node", ["node"])
NODE_DISK_FREE = Gauge("lq_node_disk_free_bytes", "Free space under the data directory", ["node"])
NODE_IMAGE_CACHE = Gauge("lq_node_image_cache_bytes", "Bytes in the node's image cache", ["node"])
PROVISION_SECONDS = Histogram(
    "lq_vm_provision_seconds",
    "Time from the VM's creation (POST) to its first running / ready state",
    ["phase"],  # running | ready
    buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200),
)
IMAGE_CACHE_REQUESTS = Counter(
    "lq_node_image_cache_requests_total", "Images asked of the node's cache", ["result"],
)
COMMANDS_DEAD_LETTERED = Counter(
    "lq_node_commands_dead_lettered_total",
    "Commands terminated and republished on the dead-letter subject", ["reason"],  # invalid|failed
)
IMAGE_CACHE_DOWNLOADED = Counter(
    "lq_node_image_cache_downloaded_bytes_total", "Bytes the node's cache downloaded",
)

# VMs whose first running / ready this process observed: a later start or reboot of the same VM
# is not a provisioning (bounded by the VMs this agent runs; forgotten when one is deleted).
_seen: dict[str, set[VmState]] = {}


def record_status(status: NodeStatus) -> None:
    """Capacity and allocation gauges from the heartbeat's status."""
    node = status.id
    vcpus_capacity = status.vcpus_capacity or status.vcpus
    memory_capacity = status.memory_mib_capacity or status.memory_mib
    for kind, vcpus, memory in (("physical", status.vcpus, status.memory_mib),
                                ("capacity", vcpus_capacity, memory_capacity),
                                ("allocated", status.allocated_vcpus,
                                 status.allocated_memory_mib)):
        NODE_VCPUS.labels(node, kind).set(vcpus)
        NODE_MEMORY.labels(node, kind).set(memory * MIB)
    NODE_VMS.labels(node).set(status.vm_count)
    NODE_DISK_FREE.labels(node).set(status.disk_free_gib * GIB)
    NODE_IMAGE_CACHE.labels(node).set(status.image_cache_bytes)


_FIRST = {VmState.RUNNING: frozenset({VmState.STARTING, VmState.CREATING}),
          VmState.READY: frozenset({VmState.RUNNING, VmState.STARTING})}


def observe_transition(before: VmRecord, after: VmRecord) -> None:
    """Provisioning durations: the record's ``created_at`` to the VM's first running and
    first ready (a VM created before this agent started counts once more: rare, bounded)."""
    sources = _FIRST.get(after.state)
    if sources is None or before.state not in sources:
        return
    seen = _seen.setdefault(after.id, set())
    if after.state in seen:
        return
    seen.add(after.state)
    seconds = (utcnow() - after.created_at).total_seconds()
    PROVISION_SECONDS.labels(str(after.state)).observe(seconds)


def forget(vm_id: str) -> None:
    _seen.pop(vm_id, None)
