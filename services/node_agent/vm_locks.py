"""Which VMs have commands held by this agent, and the per-VM lock that serialises work on one VM.

The command consumer holds a VM from the moment a command for it arrives until it is acked, so
reconciliation and libvirt events leave that VM to the command (which records the outcome).
"""

from __future__ import annotations

import asyncio
from collections import Counter


class VmActivity:
    """Held command counts and locks, per VM id."""

    def __init__(self) -> None:
        self._held: Counter[str] = Counter()
        self._locks: dict[str, asyncio.Lock] = {}

    def hold(self, vm_id: str) -> None:
        self._held[vm_id] += 1

    def release(self, vm_id: str) -> None:
        self._held[vm_id] -= 1
        if self._held[vm_id] <= 0:
            del self._held[vm_id]
            lock = self._locks.get(vm_id)
            if lock is not None and not lock.locked():
                del self._locks[vm_id]

    def is_busy(self, vm_id: str) -> bool:
        """True while a command for the VM is queued or running here."""
        lock = self._locks.get(vm_id)
        return self._held[vm_id] > 0 or (lock is not None and lock.locked())

    def lock(self, vm_id: str) -> asyncio.Lock:
        """The lock every change of this VM's domain and record runs under."""
        lock = self._locks.get(vm_id)
        if lock is None:
            lock = self._locks[vm_id] = asyncio.Lock()
        return lock
