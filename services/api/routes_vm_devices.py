"""Day-2 devices of a VM (docs/day2.md): ``PATCH /v1/vms/{vm}`` (resize), extra disks
(``/v1/vms/{vm}/disks``) and the media drive (``/v1/vms/{vm}/media``).

The gateway checks the request against the current record (``vm_devices``, pure), reserves any
growth of vCPUs and memory on the VM's node, writes the record with compare-and-set, and queues
the node's command; the node makes the domain match the record and reports it with an event
(``vm.resized``, ``vm.disk_attached`` / ``vm.disk_detached``, ``vm.media_inserted`` /
``vm.media_ejected``). Answers are 202 with the record as written.
"""

from __future__ import annotations

import importlib
import uuid
from typing import Any

import structlog
from aiohttp import web

from limiquantix.api import app_keys, placement, templates, vm_devices, vm_image
from limiquantix.api.http_json import decode_body
from limiquantix.api.openapi import OpenApiPart, Operation
from limiquantix.api.routes_vms import (
    _queue_or_fail,
    _vm_response,
    image_library_client,
    resolve,
)
from limiquantix.api.vm_writes import write_record
from limiquantix.common.commands import (
    AttachDisk,
    Command,
    DetachDisk,
    EjectMedia,
    InsertMedia,
    ResizeVm,
)
from limiquantix.common.vms import (
    AddDiskRequest,
    InsertMediaRequest,
    ResizeVmRequest,
    VmRecord,
)

log = structlog.get_logger()


async def _queue(app: web.Application, vm: VmRecord, command: Command) -> web.Response:
    await _queue_or_fail(app, vm, command)
    log.info("vm device change accepted", vm_id=vm.id, action=str(
        type(command).__struct_config__.tag), node=vm.node)
    return _vm_response(app, vm, 202)


# --- resize ----------------------------------------------------------------------------------

def _allocation_store(app: web.Application) -> Any:
    """The fleet's per-node allocation store (issue 16) when this gateway has one, else None."""
    try:
        module = importlib.import_module("limiquantix.api.allocation_store")
    except ImportError:
        return None
    key = getattr(module, "ALLOCATIONS", None)
    return app.get(key) if key is not None else None


async def _reserve(app: web.Application, vm: VmRecord, vcpus: int, memory_mib: int) -> None:
    """Hold the VM's new share of its node: the node's allocation store (compare-and-set per
    node) when the gateway has one, else a check against the allocations the VM records make
    (they follow the record written next)."""
    store = _allocation_store(app)
    node = app[app_keys.NODE_VIEW].live_node(vm.node)
    if store is not None and node is not None:
        await store.reserve(node, vm.id, vcpus, memory_mib)
        return
    grow_vcpus, grow_memory = max(0, vcpus - vm.vcpus), max(0, memory_mib - vm.memory_mib)
    if grow_vcpus or grow_memory:
        placement.place(vcpus=grow_vcpus, memory_mib=grow_memory, explicit=vm.node,
                        nodes=app[app_keys.NODE_VIEW].live(),
                        used=app[app_keys.VM_VIEW].allocations())


def _resized(vm: VmRecord, body: ResizeVmRequest) -> VmRecord:
    templates.refuse_change(vm, "resized")  # its disk is its linked clones' base
    return vm_devices.resized(vm, body)


async def resize_vm(request: web.Request) -> web.Response:
    """PATCH /v1/vms/{vm}: new vCPUs, memory, disk size (and hot-plug ceilings)."""
    app = request.app
    body = await decode_body(request, ResizeVmRequest)
    vm = await resolve(app, request.match_info["vm"])
    wanted = _resized(vm, body)  # refused here before anything is held
    await _reserve(app, vm, wanted.vcpus, wanted.memory_mib)
    try:
        updated = await write_record(app, vm, lambda current: _resized(current, body))
    except BaseException:
        await _reserve(app, wanted, vm.vcpus, vm.memory_mib)  # give the growth back
        raise
    return await _queue(app, updated, ResizeVm(command_id=str(uuid.uuid4()), vm_id=updated.id))


# --- extra disks -----------------------------------------------------------------------------

async def add_disk(request: web.Request) -> web.Response:
    """POST /v1/vms/{vm}/disks: a new empty qcow2 disk, attached live when running."""
    app = request.app
    body = await decode_body(request, AddDiskRequest)
    vm = await resolve(app, request.match_info["vm"])
    disk_id = str(uuid.uuid4())
    updated = await write_record(app, vm,
                           lambda current: vm_devices.with_new_disk(current, body, disk_id)[0])
    disk = vm_devices.find_disk(updated, body.name)
    return await _queue(app, updated, AttachDisk(command_id=str(uuid.uuid4()),
                                                 vm_id=updated.id, disk_id=disk.id))


async def remove_disk(request: web.Request) -> web.Response:
    """DELETE /v1/vms/{vm}/disks/{disk}: detach the disk (live when running), delete it."""
    app = request.app
    vm = await resolve(app, request.match_info["vm"])
    ref = request.match_info["disk"]
    disk = vm_devices.find_disk(vm, ref)
    updated = await write_record(app, vm, lambda current: vm_devices.detaching(current, disk.id)[0])
    return await _queue(app, updated, DetachDisk(command_id=str(uuid.uuid4()),
                                                 vm_id=updated.id, disk_id=disk.id))


# --- media -----------------------------------------------------------------------------------

async def insert_media(request: web.Request) -> web.Response:
    """POST /v1/vms/{vm}/media: an ISO from the library into the media drive."""
    app = request.app
    body = await decode_body(request, InsertMediaRequest)
    vm = await resolve(app, request.match_info["vm"])
    image = await vm_image._find(image_library_client(app), body.image)
    vm_devices.check_iso(image)
    updated = await write_record(app, vm, lambda current: vm_devices.with_media(current, image))
    return await _queue(app, updated, InsertMedia(command_id=str(uuid.uuid4()),
                                                  vm_id=updated.id))


async def eject_media(request: web.Request) -> web.Response:
    """DELETE /v1/vms/{vm}/media: empty the media drive."""
    app = request.app
    vm = await resolve(app, request.match_info["vm"])
    updated = await write_record(app, vm, vm_devices.ejecting)
    return await _queue(app, updated, EjectMedia(command_id=str(uuid.uuid4()), vm_id=updated.id))


OPENAPI = OpenApiPart(tag="vms", operations=(
    Operation(method="PATCH", path="/v1/vms/{vm}",
              summary="Resize: vCPUs, memory, disk (live up to the VM's ceilings)",
              body=ResizeVmRequest, response=VmRecord, status=202, errors=(404, 409, 422),
              description="A stopped VM gets the new figures at its next start; a running one "
                          "gets more vCPUs and memory live up to max_vcpus / max_memory_mib, "
                          "else 409 `resize_needs_stop`. The disk grows live; shrinking it is "
                          "422 `disk_shrink_refused`. 409 `no_capacity` when the node has no "
                          "room for the growth. Reported by the event `vm.resized`."),
    Operation(method="POST", path="/v1/vms/{vm}/disks",
              summary="Add an extra disk (a new qcow2; attached live when running)",
              body=AddDiskRequest, response=VmRecord, status=202, errors=(404, 409, 422),
              description="The record lists it in `disks` (`attaching`, then `attached` with "
                          "`vm.disk_attached`). The same name and size again answers the same "
                          "disk; 409 `disk_name_taken`, `too_many_disks`, `disks_need_virtio`."),
    Operation(method="DELETE", path="/v1/vms/{vm}/disks/{disk}",
              summary="Detach an extra disk (by id or name) and delete it",
              response=VmRecord, status=202, errors=(404, 409),
              description="Marked `detaching`, then gone from `disks` with `vm.disk_detached`."),
    Operation(method="POST", path="/v1/vms/{vm}/media",
              summary="Insert an ISO from the library into the media CD-ROM drive",
              body=InsertMediaRequest, response=VmRecord, status=202, errors=(404, 409, 422),
              description="Replaces what is in the drive (never the seed drive). `media` on "
                          "the record: `inserting`, then `inserted` with `vm.media_inserted`. "
                          "422 `not_an_iso`, 409 `image_not_ready`."),
    Operation(method="DELETE", path="/v1/vms/{vm}/media", summary="Eject the media drive",
              response=VmRecord, status=202, errors=(404, 409),
              description="`media` goes `ejecting`, then null with `vm.media_ejected`; 409 "
                          "`no_media` when the drive is empty."),
))


def setup(app: web.Application) -> None:
    app.router.add_patch("/v1/vms/{vm}", resize_vm)
    app.router.add_post("/v1/vms/{vm}/disks", add_disk)
    app.router.add_delete("/v1/vms/{vm}/disks/{disk}", remove_disk)
    app.router.add_post("/v1/vms/{vm}/media", insert_media)
    app.router.add_delete("/v1/vms/{vm}/media", eject_media)
