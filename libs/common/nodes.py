"""Node status as heartbeated into the ``nodes`` KV bucket (entries expire with the TTL)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from limiquantix.common.base import Model


class NodeStatus(Model, frozen=True, kw_only=True):
    """One node's capacity and allocations, rewritten every heartbeat interval."""

    id: str
    hostname: str = ""
    version: str = ""
    libvirt_uri: str = ""
    virt_type: str = ""  # "kvm", "qemu" (TCG) or "test"
    console_host: str = "127.0.0.1"
    vcpus: int
    memory_mib: int
    disk_free_gib: float = 0.0
    allocated_vcpus: int = 0
    allocated_memory_mib: int = 0
    vm_count: int = 0
    vm_ids: tuple[str, ...] = ()
    image_cache_bytes: int = 0
    heartbeat_at: datetime
    started_at: datetime | None = None

    @property
    def free_memory_mib(self) -> int:
        return self.memory_mib - self.allocated_memory_mib

    @property
    def free_vcpus(self) -> int:
        return self.vcpus - self.allocated_vcpus


node_encoder = msgspec.json.Encoder()
node_decoder = msgspec.json.Decoder(NodeStatus)
