"""``client.devices``: resize a VM, its extra disks and its media drive (docs/day2.md), sync and
async.

Every call answers the VM's record as the gateway wrote it (202): the new figures, the disk
``attaching`` / ``detaching``, the media ``inserting`` / ``ejecting``; the node then makes the
domain match and says so with an event. ``wait`` polls the record until a test holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from limiquantix.client.transport import decode, seg
from limiquantix.client.waiting import apoll, poll
from limiquantix.common.vms import (
    AddDiskRequest,
    InsertMediaRequest,
    ResizeVmRequest,
    VmDisk,
    VmRecord,
)

if TYPE_CHECKING:
    from limiquantix.client.aio import AsyncClient
    from limiquantix.client.sync import Client


def _timed_out(vm: str, timeout_s: float) -> Callable[[VmRecord], str]:
    return lambda record: (f"VM {vm} did not reach the awaited devices in {timeout_s:g} s "
                           f"(state {record.state})")


def _vm(vm: str) -> str:
    return f"/v1/vms/{seg(vm)}"


def disk_attached(name: str) -> Callable[[VmRecord], bool]:
    """For ``wait``: the VM's extra disk ``name`` is attached."""
    return lambda record: any(d.name == name and d.state == "attached" for d in record.disks)


def disk_gone(name: str) -> Callable[[VmRecord], bool]:
    """For ``wait``: the VM no longer has an extra disk ``name``."""
    return lambda record: all(d.name != name for d in record.disks)


def media_inserted(record: VmRecord) -> bool:
    """For ``wait``: an ISO is in the media drive."""
    return record.media is not None and record.media.state == "inserted"


def media_empty(record: VmRecord) -> bool:
    """For ``wait``: the media drive is empty."""
    return record.media is None


def find_disk(record: VmRecord, ref: str) -> VmDisk | None:
    """The record's extra disk whose name or id is ``ref``."""
    return next((d for d in record.disks if ref in (d.id, d.name)), None)


class Devices:
    """``PATCH /v1/vms/{vm}``, ``/v1/vms/{vm}/disks`` and ``/v1/vms/{vm}/media``."""

    def __init__(self, client: Client) -> None:
        self._t = client.transport

    def resize(self, vm: str, *, vcpus: int | None = None, memory_mib: int | None = None,
               disk_gib: int | None = None, max_vcpus: int | None = None,
               max_memory_mib: int | None = None) -> VmRecord:
        """New figures (only those given change): at the next start when stopped, live up to
        the ceilings when running (else :class:`Conflict` ``resize_needs_stop``)."""
        body = ResizeVmRequest(vcpus=vcpus, memory_mib=memory_mib, disk_gib=disk_gib,
                               max_vcpus=max_vcpus, max_memory_mib=max_memory_mib)
        return self._t.call("PATCH", _vm(vm), VmRecord, json_body=body)

    def add_disk(self, vm: str, name: str, size_gib: int) -> VmRecord:
        """A new empty extra disk (``attaching``; attached live when the VM runs)."""
        return self._t.post(f"{_vm(vm)}/disks", VmRecord,
                            AddDiskRequest(name=name, size_gib=size_gib))

    def disks(self, vm: str) -> list[VmDisk]:
        """The VM's extra disks, from its record."""
        return list(self._t.get(_vm(vm), VmRecord).disks)

    def remove_disk(self, vm: str, disk: str) -> VmRecord:
        """Detach extra disk ``disk`` (name or id) and delete it."""
        return self._t.call("DELETE", f"{_vm(vm)}/disks/{seg(disk)}", VmRecord)

    def insert_media(self, vm: str, image: str) -> VmRecord:
        """Put ISO ``image`` (library id or name) in the VM's media drive."""
        return self._t.post(f"{_vm(vm)}/media", VmRecord, InsertMediaRequest(image=image))

    def eject_media(self, vm: str) -> VmRecord:
        """Empty the VM's media drive."""
        return self._t.call("DELETE", f"{_vm(vm)}/media", VmRecord)

    def wait(self, vm: str, done: Callable[[VmRecord], bool], *,
             timeout_s: float = 120.0) -> VmRecord:
        """Poll the VM's record until ``done(record)`` (e.g. :func:`disk_attached`)."""
        return poll(lambda: self._t.get(_vm(vm), VmRecord), done, timeout_s=timeout_s,
                    timed_out=_timed_out(vm, timeout_s))


class AsyncDevices:
    """:class:`Devices`, awaited."""

    def __init__(self, client: AsyncClient) -> None:
        self._t = client.transport

    async def _call(self, method: str, path: str, body: object = None) -> VmRecord:
        answer = await self._t.request(method, path, json_body=body)
        return decode(answer.body, VmRecord)

    async def resize(self, vm: str, *, vcpus: int | None = None,
                     memory_mib: int | None = None, disk_gib: int | None = None,
                     max_vcpus: int | None = None, max_memory_mib: int | None = None
                     ) -> VmRecord:
        body = ResizeVmRequest(vcpus=vcpus, memory_mib=memory_mib, disk_gib=disk_gib,
                               max_vcpus=max_vcpus, max_memory_mib=max_memory_mib)
        return await self._call("PATCH", _vm(vm), body)

    async def add_disk(self, vm: str, name: str, size_gib: int) -> VmRecord:
        return await self._call("POST", f"{_vm(vm)}/disks",
                                AddDiskRequest(name=name, size_gib=size_gib))

    async def disks(self, vm: str) -> list[VmDisk]:
        return list((await self._t.get(_vm(vm), VmRecord)).disks)

    async def remove_disk(self, vm: str, disk: str) -> VmRecord:
        return await self._call("DELETE", f"{_vm(vm)}/disks/{seg(disk)}")

    async def insert_media(self, vm: str, image: str) -> VmRecord:
        return await self._call("POST", f"{_vm(vm)}/media", InsertMediaRequest(image=image))

    async def eject_media(self, vm: str) -> VmRecord:
        return await self._call("DELETE", f"{_vm(vm)}/media")

    async def wait(self, vm: str, done: Callable[[VmRecord], bool], *,
                   timeout_s: float = 120.0) -> VmRecord:
        return await apoll(lambda: self._t.get(_vm(vm), VmRecord), done, timeout_s=timeout_s,
                           timed_out=_timed_out(vm, timeout_s))
