"""The node's heartbeat: its NodeStatus in the ``nodes`` bucket (the bucket TTL drops it when
beats stop), and its removal on a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import structlog
from nats.js.kv import KeyValue

from limiquantix.common.kv_records import KvRecords
from limiquantix.common.model import utcnow
from limiquantix.common.nodes import NodeStatus, NodeWarning, capacity, vm_digest
from limiquantix.common.runner import package_version
from limiquantix.common.settings import Settings
from limiquantix.node_agent import metrics
from limiquantix.node_agent.record_view import NodeRecords, wait_either

log = structlog.get_logger()

GIB = 1 << 30
PROMPT_BEAT_DELAY_S = 0.05


def host_capacity(settings: Settings) -> tuple[int, int]:
    """(vCPUs, memory MiB) this node offers: the settings, else what the host has."""
    vcpus = settings.node_vcpus or os.cpu_count() or 1
    memory = settings.node_memory_mib or (
        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20))
    return vcpus, memory


def allocatable(settings: Settings) -> tuple[int, int]:
    """(vCPUs, memory MiB) placement may hand out on this node (ratios and reserve applied)."""
    vcpus, memory = host_capacity(settings)
    reserved = 0 if settings.node_memory_mib else settings.reserved_host_memory_mib
    return capacity(vcpus, memory, cpu_ratio=settings.cpu_allocation_ratio,
                    memory_ratio=settings.memory_allocation_ratio, reserved_memory_mib=reserved)


def _dir_bytes(path: Path) -> int:
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _disk_free_gib(path: Path) -> float:
    probe = path if path.exists() else path.parent
    return round(shutil.disk_usage(probe).free / GIB, 2)


class Heartbeat:
    """Builds and writes this node's status."""

    def __init__(self, settings: Settings, bucket: KeyValue, records: NodeRecords, *,
                 node_id: str, virt_type: str,
                 warnings: tuple[NodeWarning, ...] = (),
                 live_warnings: Callable[[], tuple[NodeWarning, ...]] = tuple) -> None:
        self._settings = settings
        self._beats = KvRecords(bucket, NodeStatus)
        self._records = records
        self._node_id = node_id
        self._virt_type = virt_type
        self._warnings = warnings  # found at start
        self._live_warnings = live_warnings  # true now (e.g. libvirt disconnected)
        self._nudged = asyncio.Event()
        self._started_at: datetime = utcnow()
        self._version = package_version()

    async def status(self) -> NodeStatus:
        vcpus, memory = host_capacity(self._settings)
        vcpus_capacity, memory_capacity = allocatable(self._settings)
        records = self._records.all()
        holding = [r for r in records if r.takes_capacity]
        data = self._settings.data_path
        disk_free = await asyncio.to_thread(_disk_free_gib, data)
        cache_bytes = await asyncio.to_thread(_dir_bytes, data / "cloud-images")
        return NodeStatus(
            id=self._node_id, hostname=socket.gethostname(), version=self._version,
            libvirt_uri=self._settings.libvirt_uri, virt_type=self._virt_type,
            console_host=self._settings.console_host, vcpus=vcpus, memory_mib=memory,
            cpu_allocation_ratio=self._settings.cpu_allocation_ratio,
            memory_allocation_ratio=self._settings.memory_allocation_ratio,
            vcpus_capacity=vcpus_capacity, memory_mib_capacity=memory_capacity,
            warnings=self._warnings + self._live_warnings(),
            disk_free_gib=disk_free,
            allocated_vcpus=sum(r.vcpus for r in holding),
            allocated_memory_mib=sum(r.memory_mib for r in holding),
            # Counts and a digest, never every id: the beat stays ~1 KiB at any VM count.
            vm_count=len(records), vm_digest=vm_digest(r.id for r in records),
            image_cache_bytes=cache_bytes, heartbeat_at=utcnow(), started_at=self._started_at,
        )

    async def beat(self) -> None:
        status = await self.status()
        await self._beats.put(self._node_id, status)
        metrics.record_status(status)

    async def run(self) -> None:
        """Beat every ``heartbeat_interval_s``, and soon after VMs arrive or leave (placement
        reads the allocations), until cancelled; a failed beat is retried."""
        changed = self._records.changed
        while True:
            changed.clear()
            self._nudged.clear()
            try:
                await self.beat()
            except Exception as exc:
                log.warning("heartbeat failed", error=str(exc))
            # asyncio.timeout, not wait_for: on Python 3.11 a cancel that lands while wait_for
            # is timing out comes back as TimeoutError, which this loop would swallow, and the
            # agent's stop would hang on this task.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.heartbeat_interval_s):
                    await wait_either(changed, self._nudged)
                await asyncio.sleep(PROMPT_BEAT_DELAY_S)  # one beat for a burst of creates

    def nudge(self) -> None:
        """Beat soon: something the beat reports changed (a warning came or went)."""
        self._nudged.set()

    async def remove(self) -> None:
        """Withdraw this node at once (a clean stop), instead of waiting for the TTL."""
        try:
            await self._beats.delete(self._node_id)
        except Exception as exc:
            log.warning("could not remove the heartbeat", error=str(exc))
