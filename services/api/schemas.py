"""Response bodies specific to the gateway (requests and records live in limiquantix.common)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from limiquantix.common.model import Model
from limiquantix.common.nodes import NodeWarning
from limiquantix.common.vms import VmRecord


class VmList(Model, frozen=True, kw_only=True):
    """``GET /v1/vms``: one page of records sorted by creation time (secrets removed)."""

    items: tuple[VmRecord, ...]
    next_cursor: str | None = None  # present when there is a next page: pass it as ?cursor=


class NodeInfo(Model, frozen=True, kw_only=True):
    """A node as the API shows it: capacity, allocations, VMs, liveness."""

    id: str
    status: Literal["online", "offline"]
    hostname: str = ""
    version: str = ""
    libvirt_uri: str = ""
    virt_type: str = ""
    vcpus: int = 0  # physical (or LQ_NODE_VCPUS)
    memory_mib: int = 0  # physical (or LQ_NODE_MEMORY_MIB)
    cpu_allocation_ratio: float = 1.0
    memory_allocation_ratio: float = 1.0
    vcpus_capacity: int = 0  # what placement may hand out: vcpus x ratio
    memory_mib_capacity: int = 0  # (memory - reserved host memory) x ratio
    disk_free_gib: float = 0.0
    allocated_vcpus: int = 0  # the VMs placed on it that hold resources (what placement uses)
    allocated_memory_mib: int = 0
    free_vcpus: int = 0  # of the capacity
    free_memory_mib: int = 0
    warnings: tuple[NodeWarning, ...] = ()  # the node's own findings, each with a fix
    vm_count: int = 0
    vm_ids: tuple[str, ...] = ()  # VMs whose record names this node
    last_heartbeat: datetime | None = None
    started_at: datetime | None = None


class NodeList(Model, frozen=True, kw_only=True):
    """``GET /v1/nodes``: one page of the online nodes and offline nodes still referenced by
    VMs, sorted by id."""

    items: tuple[NodeInfo, ...]
    next_cursor: str | None = None  # present when there is a next page: pass it as ?cursor=
