"""Day-2 device changes as pure functions of a VM record and a request (docs/day2.md).

Each returns the record as it should be stored (the gateway writes it with compare-and-set, so
it is computed again on the current record when another write came first) or raises the typed
error the client gets. The node then makes the domain match the record.
"""

from __future__ import annotations

import msgspec

from limiquantix.api.errors import ImageNotReady
from limiquantix.api.vm_writes import require_day2_state
from limiquantix.common import windows
from limiquantix.common.errors import Conflict, InvalidRequest, NotFound
from limiquantix.common.images import ImageRecord, ImageState
from limiquantix.common.vms import (
    EXTRA_DISK_TARGETS,
    AddDiskRequest,
    ResizeVmRequest,
    VmDisk,
    VmMedia,
    VmRecord,
    is_up,
)

# A running VM's resize, disks and media change live; a stopped one's at its next start.
# Linux onlines hot-plugged memory in blocks of 128 MiB (x86-64 memory block size).
MEMORY_STEP_MIB = 128


class ResizeNeedsStop(Conflict):
    """The running VM cannot take this change live."""

    code = "resize_needs_stop"
    default_hint = ("Stop the VM (`lq vm stop NAME`), resize it, then start it again; to "
                    "hot-plug later, give it max_vcpus / max_memory_mib (`--max-vcpus`, "
                    "`--max-memory`) while it is stopped.")


class DiskShrinkRefused(InvalidRequest):
    """A disk never shrinks (it would cut the guest's file system)."""

    code = "disk_shrink_refused"
    default_hint = "Ask for a disk_gib at least the current one; add an extra disk for space."


class MemoryStep(InvalidRequest):
    """Memory grows on a running VM in whole blocks the guest can online."""

    code = "memory_step"
    default_hint = f"Grow a running VM's memory by a multiple of {MEMORY_STEP_MIB} MiB."


class DiskNameTaken(Conflict):
    """The VM already has an extra disk of this name (with another size)."""

    code = "disk_name_taken"
    default_hint = "Choose another name, or remove that disk first (`lq vm disk remove`)."


class TooManyDisks(Conflict):
    """Every extra disk slot of the VM is taken."""

    code = "too_many_disks"
    default_hint = (f"A VM has at most {len(EXTRA_DISK_TARGETS)} extra disks; remove one or "
                    "grow one instead.")


class DisksNeedVirtio(Conflict):
    """A Windows VM without the virtio-win drivers has no controller for extra disks."""

    code = "disks_need_virtio"
    default_hint = ("Upload the virtio-win ISO to the library and create the VM again; it then "
                    "gets the virtio-scsi controller extra disks use.")


class DiskNotFound(NotFound):
    """The VM has no extra disk with this id or name."""

    code = "disk_not_found"
    default_hint = "`lq vm disk list VM` shows the VM's extra disks."


class NotAnIso(InvalidRequest):
    """Only an ISO image goes in the media drive."""

    code = "not_an_iso"
    default_hint = "Upload an ISO to the library (`lq image upload FILE.iso`) and insert that."


class NoMedia(Conflict):
    """The media drive is empty already."""

    code = "no_media"
    default_hint = "Nothing to eject; `lq vm show VM` shows the media drive."


def ceilings(vm: VmRecord) -> tuple[int, int]:
    """The hot-plug ceilings (vCPUs, memory MiB) in effect (records older than them: none)."""
    return max(vm.max_vcpus, vm.vcpus), max(vm.max_memory_mib, vm.memory_mib)


def resized(vm: VmRecord, body: ResizeVmRequest) -> VmRecord:
    """The record with the new figures (the whole request applies, or none of it)."""
    require_day2_state(vm, "resize")
    if all(value is None for value in msgspec.structs.astuple(body)):
        raise InvalidRequest("nothing to change", hint="Give vcpus, memory_mib, disk_gib, "
                             "max_vcpus or max_memory_mib.")
    vcpus = body.vcpus if body.vcpus is not None else vm.vcpus
    memory = body.memory_mib if body.memory_mib is not None else vm.memory_mib
    disk = body.disk_gib if body.disk_gib is not None else vm.disk_gib
    if disk < vm.disk_gib:
        raise DiskShrinkRefused(f"the disk of {vm.name!r} is {vm.disk_gib} GiB and never "
                                f"shrinks; {disk} GiB asked", disk_gib=vm.disk_gib)
    windows.check_minimums(vm.os_type, vcpus=vcpus, memory_mib=memory, disk_gib=disk)
    max_vcpus, max_memory = ceilings(vm)
    if is_up(vm.state):
        _check_live(vm, body, vcpus, memory, max_vcpus, max_memory)
    else:
        max_vcpus = max(body.max_vcpus or max_vcpus, vcpus)
        max_memory = max(body.max_memory_mib or max_memory, memory)
        if body.max_vcpus is not None and body.max_vcpus < vcpus:
            raise InvalidRequest(f"max_vcpus {body.max_vcpus} is below vcpus {vcpus}")
        if body.max_memory_mib is not None and body.max_memory_mib < memory:
            raise InvalidRequest(f"max_memory_mib {body.max_memory_mib} is below memory_mib "
                                 f"{memory}")
    return msgspec.structs.replace(vm, vcpus=vcpus, memory_mib=memory, disk_gib=disk,
                                   max_vcpus=max_vcpus, max_memory_mib=max_memory)


def _check_live(vm: VmRecord, body: ResizeVmRequest, vcpus: int, memory: int,
                max_vcpus: int, max_memory: int) -> None:
    """What a running VM can take: more vCPUs and memory up to its ceilings, a larger disk."""
    name = vm.name
    if ((body.max_vcpus is not None and body.max_vcpus != max_vcpus)
            or (body.max_memory_mib is not None and body.max_memory_mib != max_memory)):
        raise ResizeNeedsStop(f"the hot-plug ceilings of {name!r} change only while it is "
                              "stopped", vm_id=vm.id)
    if vcpus < vm.vcpus or memory < vm.memory_mib:
        raise ResizeNeedsStop(f"running VM {name!r} cannot lose vCPUs or memory", vm_id=vm.id)
    if vcpus > max_vcpus:
        raise ResizeNeedsStop(f"running VM {name!r} can be hot-plugged up to {max_vcpus} "
                              f"vCPUs; {vcpus} asked", vm_id=vm.id, max_vcpus=max_vcpus)
    if memory > max_memory:
        raise ResizeNeedsStop(f"running VM {name!r} can be hot-plugged up to {max_memory} MiB; "
                              f"{memory} MiB asked", vm_id=vm.id, max_memory_mib=max_memory)
    if (memory - vm.memory_mib) % MEMORY_STEP_MIB:
        raise MemoryStep(f"memory of running VM {name!r} can grow by multiples of "
                         f"{MEMORY_STEP_MIB} MiB; {memory - vm.memory_mib} MiB asked")


def virtio_capable(vm: VmRecord) -> bool:
    """Linux always; Windows only with the virtio-win drivers attached."""
    return vm.os_type != "windows" or bool(vm.drivers_image)


def find_disk(vm: VmRecord, ref: str) -> VmDisk:
    """The extra disk whose id or name is ``ref``."""
    for disk in vm.disks:
        if ref in (disk.id, disk.name):
            return disk
    raise DiskNotFound(f"VM {vm.name!r} has no extra disk {ref!r}", vm_id=vm.id, disk=ref)


def with_new_disk(vm: VmRecord, body: AddDiskRequest, disk_id: str) -> tuple[VmRecord, VmDisk]:
    """The record listing a new extra disk (``attaching``), or, when a disk of this name and
    size is listed already (a retried request), the record as it is and that disk."""
    require_day2_state(vm, "add a disk to")
    same = next((d for d in vm.disks if d.name == body.name), None)
    if same is not None:
        if same.size_gib == body.size_gib and same.state != "detaching":
            return vm, same
        raise DiskNameTaken(f"VM {vm.name!r} has a disk named {body.name!r} already",
                            vm_id=vm.id, disk=same.id)
    if not virtio_capable(vm):
        raise DisksNeedVirtio(f"Windows VM {vm.name!r} has no virtio drivers", vm_id=vm.id)
    used = {d.target for d in vm.disks}
    free = [target for target in EXTRA_DISK_TARGETS if target not in used]
    if not free:
        raise TooManyDisks(f"VM {vm.name!r} has {len(vm.disks)} extra disks", vm_id=vm.id)
    disk = VmDisk(id=disk_id, name=body.name, size_gib=body.size_gib, target=free[0])
    return msgspec.structs.replace(vm, disks=(*vm.disks, disk)), disk


def detaching(vm: VmRecord, ref: str) -> tuple[VmRecord, VmDisk]:
    """The record with disk ``ref`` marked ``detaching`` (a retry finds it marked)."""
    require_day2_state(vm, "remove a disk from")
    disk = find_disk(vm, ref)
    marked = msgspec.structs.replace(disk, state="detaching")
    return msgspec.structs.replace(vm, disks=tuple(
        marked if d.id == disk.id else d for d in vm.disks)), marked


def check_iso(image: ImageRecord) -> None:
    """An image fit for the media drive: an ISO the library holds."""
    if image.format != "iso":
        raise NotAnIso(f"image {image.name!r} is {image.format or 'not an ISO'}, not an ISO",
                       image=image.id)
    if image.state != ImageState.ACTIVE:
        raise ImageNotReady(f"image {image.name!r} is {image.state}; it must be active",
                            hint="Wait for its import or upload to finish "
                                 "(`lq image show IMAGE`).", image=image.id)


def with_media(vm: VmRecord, image: ImageRecord) -> VmRecord:
    """The record with ``image`` going into the media drive (replacing what is there)."""
    require_day2_state(vm, "insert media into")
    return msgspec.structs.replace(vm, media=VmMedia(image=image.id, name=image.name))


def ejecting(vm: VmRecord) -> VmRecord:
    """The record with its media drive being emptied."""
    require_day2_state(vm, "eject media from")
    if vm.media is None:
        raise NoMedia(f"the media drive of {vm.name!r} is empty", vm_id=vm.id)
    return msgspec.structs.replace(vm, media=msgspec.structs.replace(vm.media,
                                                                     state="ejecting"))


def check_ceilings(vcpus: int, memory_mib: int, max_vcpus: int | None,
                   max_memory_mib: int | None) -> None:
    """A create's hot-plug ceilings are not below its figures (422)."""
    if max_vcpus is not None and max_vcpus < vcpus:
        raise InvalidRequest(f"max_vcpus {max_vcpus} is below vcpus {vcpus}")
    if max_memory_mib is not None and max_memory_mib < memory_mib:
        raise InvalidRequest(f"max_memory_mib {max_memory_mib} is below memory_mib {memory_mib}")
