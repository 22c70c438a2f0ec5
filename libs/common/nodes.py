"""Node status as heartbeated into the ``nodes`` KV bucket (entries expire with the TTL)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime

import msgspec

from limiquantix.common.model import Model


class NodeWarning(Model, frozen=True, kw_only=True):
    """Something on the node that makes it slow or unsafe, with what to do about it."""

    code: str
    message: str
    hint: str = ""


class NodeStatus(Model, frozen=True, kw_only=True):
    """One node's capacity and allocations, rewritten every heartbeat interval.

    ``vcpus`` and ``memory_mib`` are the physical figures (or what the settings say the node
    offers); the ``*_capacity`` fields are what placement may hand out after the allocation
    ratios and the reserved host memory (see ``capacity()``).
    """

    id: str
    hostname: str = ""
    version: str = ""
    libvirt_uri: str = ""
    virt_type: str = ""  # "kvm", "qemu" (TCG) or "test"
    console_host: str = "127.0.0.1"
    vcpus: int
    memory_mib: int
    cpu_allocation_ratio: float = 1.0
    memory_allocation_ratio: float = 1.0
    vcpus_capacity: int = 0  # 0 from a node that does not say: the physical figure
    memory_mib_capacity: int = 0
    warnings: tuple[NodeWarning, ...] = ()
    disk_free_gib: float = 0.0
    allocated_vcpus: int = 0
    allocated_memory_mib: int = 0
    vm_count: int = 0
    # sha256 (hex) of this node's VM ids, sorted, one per line: a reader compares it with its
    # own view instead of receiving every id (30,000 ids outgrow NATS's 1 MiB payload; issue 11).
    vm_digest: str = ""
    vm_ids: tuple[str, ...] = ()  # no longer sent by nodes (see vm_digest); old nodes' lists
    image_cache_bytes: int = 0
    heartbeat_at: datetime
    started_at: datetime | None = None

    @property
    def capacity_vcpus(self) -> int:
        return self.vcpus_capacity or self.vcpus

    @property
    def capacity_memory_mib(self) -> int:
        return self.memory_mib_capacity or self.memory_mib


def vm_digest(vm_ids: Iterable[str]) -> str:
    """The ``vm_digest`` of a set of VM ids (any order)."""
    return hashlib.sha256("\n".join(sorted(vm_ids)).encode()).hexdigest()


def capacity(vcpus: int, memory_mib: int, *, cpu_ratio: float, memory_ratio: float,
             reserved_memory_mib: int) -> tuple[int, int]:
    """(vCPUs, memory MiB) a node may allocate: physical x ratio, memory less the reserve.

    Nova's defaults are the field's: vCPUs over-committed 4:1 (guests rarely use all their
    vCPUs at once), memory 1:1 (over-committed memory means the OOM killer picks a guest).
    """
    return (int(vcpus * cpu_ratio),
            max(0, int((memory_mib - reserved_memory_mib) * memory_ratio)))


node_encoder = msgspec.json.Encoder()
node_decoder = msgspec.json.Decoder(NodeStatus)
