"""``client.snapshots``: snapshots, clones and publishing of VMs (docs/day2.md), sync and async.

Every call answers the API's own types: :class:`VmSnapshot` for snapshot operations (202 with
the transitional state), the new :class:`VmRecord` for a clone, the new :class:`ImageRecord`
for a publish. ``wait`` polls one snapshot until it reaches a state (or is gone).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import TYPE_CHECKING

from limiquantix.client.errors import NotFound, WaitTimeout
from limiquantix.client.transport import decode, seg
from limiquantix.common.images import ImageRecord
from limiquantix.common.snapshots import (
    CloneVmRequest,
    CreateSnapshotRequest,
    PublishVmRequest,
    SnapshotList,
)
from limiquantix.common.vms import VmRecord, VmSnapshot

if TYPE_CHECKING:
    from limiquantix.client.aio import AsyncClient
    from limiquantix.client.sync import Client

POLL_S = 0.5
GONE = "gone"


def _path(vm: str, snapshot: str = "") -> str:
    base = f"/v1/vms/{seg(vm)}/snapshots"
    return f"{base}/{seg(snapshot)}" if snapshot else base


def _reached(snap: VmSnapshot | None, states: Collection[str]) -> bool:
    return (GONE in states) if snap is None else str(snap.state) in states


class Snapshots:
    """``/v1/vms/{vm}/snapshots``, ``/clone`` and ``/publish``."""

    def __init__(self, client: Client) -> None:
        self._t = client.transport

    def create(self, vm: str, name: str, *, description: str = "",
               memory: bool = False) -> VmSnapshot:
        """Take a snapshot (202, ``creating``); ``memory``: RAM and devices too."""
        body = CreateSnapshotRequest(name=name, description=description, memory=memory)
        return self._t.post(_path(vm), VmSnapshot, body)

    def list(self, vm: str) -> list[VmSnapshot]:
        """The VM's snapshots, oldest first."""
        return list(self._t.get(_path(vm), SnapshotList).items)

    def get(self, vm: str, snapshot: str) -> VmSnapshot:
        """One snapshot by name or id; :class:`NotFound` when there is none."""
        return self._t.get(_path(vm, snapshot), VmSnapshot)

    def revert(self, vm: str, snapshot: str) -> VmSnapshot:
        """Revert the VM to the snapshot (202, ``reverting``)."""
        return self._t.post(f"{_path(vm, snapshot)}/revert", VmSnapshot)

    def delete(self, vm: str, snapshot: str) -> VmSnapshot:
        """Delete the snapshot (202, ``deleting``; then gone from the list)."""
        return self._t.call("DELETE", _path(vm, snapshot), VmSnapshot)

    def clone(self, vm: str, name: str, *, snapshot: str | None = None, linked: bool = True,
              description: str = "") -> VmRecord:
        """A new VM from ``vm`` (at ``snapshot``, else its current disk); 202, ``pending``."""
        body = CloneVmRequest(name=name, snapshot=snapshot, linked=linked,
                              description=description)
        return self._t.post(f"/v1/vms/{seg(vm)}/clone", VmRecord, body)

    def publish(self, vm: str, image_name: str, *, snapshot: str | None = None) -> ImageRecord:
        """A new image from the VM's disk (202, ``queued``; ``active`` once uploaded)."""
        body = PublishVmRequest(name=image_name, snapshot=snapshot)
        return self._t.post(f"/v1/vms/{seg(vm)}/publish", ImageRecord, body)

    def wait(self, vm: str, snapshot: str, states: Collection[str] = ("ready", "error"), *,
             timeout_s: float = 600.0) -> VmSnapshot | None:
        """Poll until the snapshot is in one of ``states`` (``"gone"``: deleted)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                snap: VmSnapshot | None = self.get(vm, snapshot)
            except NotFound:
                snap = None
            if _reached(snap, states):
                return snap
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"snapshot {snapshot} of {vm} is still "
                                  f"{snap.state if snap else GONE} after {timeout_s:g} s")
            time.sleep(POLL_S)


class AsyncSnapshots:
    """:class:`Snapshots`, awaited."""

    def __init__(self, client: AsyncClient) -> None:
        self._t = client.transport

    async def create(self, vm: str, name: str, *, description: str = "",
                     memory: bool = False) -> VmSnapshot:
        body = CreateSnapshotRequest(name=name, description=description, memory=memory)
        return await self._t.post(_path(vm), VmSnapshot, body)

    async def list(self, vm: str) -> list[VmSnapshot]:
        return list((await self._t.get(_path(vm), SnapshotList)).items)

    async def get(self, vm: str, snapshot: str) -> VmSnapshot:
        return await self._t.get(_path(vm, snapshot), VmSnapshot)

    async def revert(self, vm: str, snapshot: str) -> VmSnapshot:
        return await self._t.post(f"{_path(vm, snapshot)}/revert", VmSnapshot)

    async def delete(self, vm: str, snapshot: str) -> VmSnapshot:
        answer = await self._t.request("DELETE", _path(vm, snapshot))
        return decode(answer.body, VmSnapshot)

    async def clone(self, vm: str, name: str, *, snapshot: str | None = None,
                    linked: bool = True, description: str = "") -> VmRecord:
        body = CloneVmRequest(name=name, snapshot=snapshot, linked=linked,
                              description=description)
        return await self._t.post(f"/v1/vms/{seg(vm)}/clone", VmRecord, body)

    async def publish(self, vm: str, image_name: str, *, snapshot: str | None = None
                      ) -> ImageRecord:
        body = PublishVmRequest(name=image_name, snapshot=snapshot)
        return await self._t.post(f"/v1/vms/{seg(vm)}/publish", ImageRecord, body)

    async def wait(self, vm: str, snapshot: str,
                   states: Collection[str] = ("ready", "error"), *,
                   timeout_s: float = 600.0) -> VmSnapshot | None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                snap: VmSnapshot | None = await self.get(vm, snapshot)
            except NotFound:
                snap = None
            if _reached(snap, states):
                return snap
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"snapshot {snapshot} of {vm} is still "
                                  f"{snap.state if snap else GONE} after {timeout_s:g} s")
            await asyncio.sleep(POLL_S)
