"""``client.snapshots``: snapshots, clones and publishing of VMs (docs/day2.md), sync and async.

Every call answers the API's own types: :class:`VmSnapshot` for snapshot operations (202 with
the transitional state), the new :class:`VmRecord` for a clone, the new :class:`ImageRecord`
for a publish. ``wait`` polls one snapshot until it reaches a state (or is gone).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from limiquantix.client.errors import NotFound
from limiquantix.client.transport import decode, seg
from limiquantix.client.waiting import apoll, poll
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

GONE = "gone"


def _path(vm: str, snapshot: str = "") -> str:
    base = f"/v1/vms/{seg(vm)}/snapshots"
    return f"{base}/{seg(snapshot)}" if snapshot else base


def _reached(states: Collection[str]) -> Callable[[VmSnapshot | None], bool]:
    return lambda snap: (GONE in states) if snap is None else str(snap.state) in states


def _timed_out(vm: str, snapshot: str, timeout_s: float) -> Callable[[VmSnapshot | None], str]:
    return lambda snap: (f"snapshot {snapshot} of {vm} is still "
                         f"{snap.state if snap else GONE} after {timeout_s:g} s")


def _clone_body(name: str, snapshot: str | None, linked: bool | None,
                description: str) -> CloneVmRequest:
    return CloneVmRequest(name=name, snapshot=snapshot, linked=linked, description=description)


def _publish_body(image_name: str, snapshot: str | None,
                  generalize: bool | None) -> PublishVmRequest:
    return PublishVmRequest(name=image_name, snapshot=snapshot, generalize=generalize)


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

    def template(self, vm: str) -> VmRecord:
        """Make the stopped VM a template (frozen; the base of linked clones)."""
        return self._t.post(f"/v1/vms/{seg(vm)}/template", VmRecord)

    def clone(self, vm: str, name: str, *, snapshot: str | None = None,
              linked: bool | None = None, description: str = "") -> VmRecord:
        """A new VM from ``vm`` (at ``snapshot``, else its current disk); 202, ``pending``.
        ``linked``: None = linked for a template, full otherwise; True of a VM that is not a
        template without ``snapshot``: made at a new snapshot ``clone-NAME`` taken now."""
        return self._t.post(f"/v1/vms/{seg(vm)}/clone", VmRecord,
                            _clone_body(name, snapshot, linked, description))

    def publish(self, vm: str, image_name: str, *, snapshot: str | None = None,
                generalize: bool | None = None) -> ImageRecord:
        """A new image from the VM's disk (202, ``queued``; ``active`` once uploaded).
        ``generalize``: None = when the VM runs with its guest agent."""
        return self._t.post(f"/v1/vms/{seg(vm)}/publish", ImageRecord,
                            _publish_body(image_name, snapshot, generalize))

    def _get_or_gone(self, vm: str, snapshot: str) -> VmSnapshot | None:
        try:
            return self.get(vm, snapshot)
        except NotFound:
            return None

    def wait(self, vm: str, snapshot: str, states: Collection[str] = ("ready", "error"), *,
             timeout_s: float = 600.0) -> VmSnapshot | None:
        """Poll until the snapshot is in one of ``states`` (``"gone"``: deleted)."""
        return poll(lambda: self._get_or_gone(vm, snapshot), _reached(states),
                    timeout_s=timeout_s, timed_out=_timed_out(vm, snapshot, timeout_s))


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

    async def template(self, vm: str) -> VmRecord:
        return await self._t.post(f"/v1/vms/{seg(vm)}/template", VmRecord)

    async def clone(self, vm: str, name: str, *, snapshot: str | None = None,
                    linked: bool | None = None, description: str = "") -> VmRecord:
        return await self._t.post(f"/v1/vms/{seg(vm)}/clone", VmRecord,
                                  _clone_body(name, snapshot, linked, description))

    async def publish(self, vm: str, image_name: str, *, snapshot: str | None = None,
                      generalize: bool | None = None) -> ImageRecord:
        return await self._t.post(f"/v1/vms/{seg(vm)}/publish", ImageRecord,
                                  _publish_body(image_name, snapshot, generalize))

    async def _get_or_gone(self, vm: str, snapshot: str) -> VmSnapshot | None:
        try:
            return await self.get(vm, snapshot)
        except NotFound:
            return None

    async def wait(self, vm: str, snapshot: str,
                   states: Collection[str] = ("ready", "error"), *,
                   timeout_s: float = 600.0) -> VmSnapshot | None:
        return await apoll(lambda: self._get_or_gone(vm, snapshot), _reached(states),
                           timeout_s=timeout_s, timed_out=_timed_out(vm, snapshot, timeout_s))
