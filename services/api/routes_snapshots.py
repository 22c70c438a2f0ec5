"""Snapshots, clones and templates of a VM (docs/day2.md).

``/v1/vms/{vm}/snapshots[/{snap}[/revert]]``, ``/v1/vms/{vm}/template``, ``/v1/vms/{vm}/clone``,
``/v1/vms/{vm}/publish``.
The gateway checks what the VM's state allows, writes the transitional entry on the record
(compare-and-set: a snapshot ``creating``/``reverting``/``deleting``, a clone's new record
``pending``), and queues the command on the VM's node; the node records the outcome and says
so with ``vm.snapshot`` / ``vm.cloned`` / ``vm.publish_progress`` events.
"""

from __future__ import annotations

import uuid

import msgspec
import nats.errors
import structlog
from aiohttp import web

from limiquantix.api import app_keys, placement, templates
from limiquantix.api.allocation_store import ALLOCATIONS
from limiquantix.api.auth import principal_of
from limiquantix.api.errors import IllegalTransition
from limiquantix.api.http_json import decode_body, json_response
from limiquantix.api.openapi import OpenApiPart, Operation
from limiquantix.api.routes_vms import (
    image_library_client,
    name_taken_by_store,
    release_reservation,
    resolve,
    vm_name_taken,
)
from limiquantix.api.snapshot_errors import (
    CloneRefused,
    GeneralizeUnavailable,
    SnapshotNameTaken,
    SnapshotNotFound,
    SnapshotNotReady,
    SnapshotRefused,
)
from limiquantix.api.vm_writes import require_day2_state, write_record
from limiquantix.common.commands import (
    Command,
    CreateSnapshot,
    CreateVm,
    DeleteSnapshot,
    PublishVm,
    RevertSnapshot,
)
from limiquantix.common.errors import Conflict, LimiquantixError, Unavailable
from limiquantix.common.events import VmStateChanged, VmTemplated
from limiquantix.common.images import CreateImageRequest, ImageRecord
from limiquantix.common.library_tokens import sign
from limiquantix.common.model import utcnow
from limiquantix.common.publish import publish_event, send_command
from limiquantix.common.snapshots import (
    CloneVmRequest,
    CreateSnapshotRequest,
    PublishVmRequest,
    SnapshotList,
)
from limiquantix.common.vms import (
    CloneSource,
    GuestInfo,
    PortForward,
    SnapshotState,
    VmRecord,
    VmSnapshot,
    VmState,
)

log = structlog.get_logger()

# The node converts the disk before it uploads: its PUT token must outlive that.
PUBLISH_TOKEN_TTL_S = 6 * 3600.0
_UP = frozenset({VmState.RUNNING, VmState.READY})
_BUSY = frozenset({SnapshotState.CREATING, SnapshotState.REVERTING, SnapshotState.DELETING})


# --- helpers ---------------------------------------------------------------------------------

def find_snapshot(vm: VmRecord, ref: str) -> VmSnapshot:
    """The VM's snapshot whose id or name is ``ref``."""
    for snap in vm.snapshots:
        if ref in (snap.id, snap.name):
            return snap
    raise SnapshotNotFound(f"VM {vm.name!r} has no snapshot {ref!r}", vm_id=vm.id, snapshot=ref)


async def _send(app: web.Application, node: str, command: Command) -> None:
    """Queue ``command`` (``send_command`` retries transient failures itself)."""
    try:
        await send_command(app[app_keys.JETSTREAM], node, command)
        return
    except Exception as exc:
        log.warning("command publish failed", vm_id=command.vm_id, error=str(exc))
    raise Unavailable(f"could not queue the command for VM {command.vm_id!r}",
                      hint="Check NATS/JetStream, then try again.", vm_id=command.vm_id)


def _snapshot_response(vm: VmRecord, snap: VmSnapshot, status: int = 202) -> web.Response:
    return json_response(snap, status=status,
                         headers={"Location": f"/v1/vms/{vm.id}/snapshots/{snap.id}"})


# --- snapshots -------------------------------------------------------------------------------

async def create_snapshot(request: web.Request) -> web.Response:
    """POST /v1/vms/{vm}/snapshots: 202 with the snapshot (``creating``)."""
    app = request.app
    body = await decode_body(request, CreateSnapshotRequest)
    vm = await resolve(app, request.match_info["vm"])
    snap = VmSnapshot(id=str(uuid.uuid4()), name=body.name, description=body.description,
                      memory=body.memory, created_at=utcnow())

    def add(current: VmRecord) -> VmRecord:
        require_day2_state(current, "snapshot")
        templates.refuse_change(current, "snapshotted")
        if body.memory and current.state == VmState.STOPPED:
            raise SnapshotRefused(
                f"VM {current.name!r} is stopped: it has no memory to save",
                hint="Start the VM first, or take a disk-only snapshot (memory: false).",
                vm_id=current.id)
        if current.os_type == "windows" and current.state != VmState.STOPPED:
            raise SnapshotRefused(
                f"VM {current.name!r} boots with UEFI: libvirt 9.0 refuses internal snapshots "
                "of a running VM with pflash firmware",
                hint="Stop the VM, then take the snapshot (its disk; the NVRAM is not in it).",
                vm_id=current.id)
        if any(s.name == body.name for s in current.snapshots):
            raise SnapshotNameTaken(f"VM {current.name!r} has a snapshot named {body.name!r}",
                                    vm_id=current.id, snapshot=body.name)
        return msgspec.structs.replace(current, snapshots=(*current.snapshots, snap))

    updated = await write_record(app, vm, add)
    await _send(app, updated.node, CreateSnapshot(
        command_id=str(uuid.uuid4()), vm_id=updated.id, snapshot_id=snap.id))
    log.info("snapshot accepted", vm_id=updated.id, snapshot_id=snap.id, memory=snap.memory)
    return _snapshot_response(updated, snap)


async def list_snapshots(request: web.Request) -> web.Response:
    """GET /v1/vms/{vm}/snapshots."""
    vm = await resolve(request.app, request.match_info["vm"])
    return json_response(SnapshotList(items=vm.snapshots))


async def get_snapshot(request: web.Request) -> web.Response:
    """GET /v1/vms/{vm}/snapshots/{snap} (name or id)."""
    vm = await resolve(request.app, request.match_info["vm"])
    return json_response(find_snapshot(vm, request.match_info["snap"]))


async def _mark(request: web.Request, action: str, target: SnapshotState,
                allowed: frozenset[SnapshotState]) -> tuple[VmRecord, VmSnapshot]:
    app = request.app
    vm = await resolve(app, request.match_info["vm"])
    ref = request.match_info["snap"]
    marked: list[VmSnapshot] = []

    def mark(current: VmRecord) -> VmRecord:
        if action == "revert":
            require_day2_state(current, "revert")
        elif current.state == VmState.DELETING:
            raise IllegalTransition(f"VM {current.name!r} is being deleted", vm_id=current.id,
                                    state=current.state, action=action)
        templates.refuse_change(current, f"changed ({action} of a snapshot)")
        snap = find_snapshot(current, ref)
        if snap.state not in allowed:
            raise SnapshotNotReady(f"snapshot {snap.name!r} is {snap.state}", vm_id=current.id,
                                   snapshot=snap.name, state=snap.state)
        if action == "revert" and current.os_type == "windows" and snap.memory:
            raise SnapshotRefused("UEFI VMs have no memory snapshots", vm_id=current.id)
        new = msgspec.structs.replace(snap, state=target)
        marked[:] = [new]
        return msgspec.structs.replace(current, snapshots=tuple(
            new if s.id == snap.id else s for s in current.snapshots))

    updated = await write_record(app, vm, mark)
    return updated, marked[0]


async def revert_snapshot(request: web.Request) -> web.Response:
    """POST /v1/vms/{vm}/snapshots/{snap}/revert: 202 (snapshot ``reverting``)."""
    vm, snap = await _mark(request, "revert", SnapshotState.REVERTING,
                           frozenset({SnapshotState.READY}))
    await _send(request.app, vm.node, RevertSnapshot(
        command_id=str(uuid.uuid4()), vm_id=vm.id, snapshot_id=snap.id))
    return _snapshot_response(vm, snap)


async def delete_snapshot(request: web.Request) -> web.Response:
    """DELETE /v1/vms/{vm}/snapshots/{snap}: 202 (``deleting``), then gone from the list."""
    # Linked clones made at the snapshot are backed by its frozen base: it stays while they
    # do (the node refuses too, for a clone made between this check and the command).
    vm = await resolve(request.app, request.match_info["vm"])
    found = find_snapshot(vm, request.match_info["snap"])
    templates.refuse_snapshot_delete(request.app[app_keys.VM_VIEW], vm, found.id, found.name)
    # ``creating`` too: a create whose command was lost can be cleared (commands of a VM run
    # in order on its node, so a create still queued runs before this delete).
    vm, snap = await _mark(request, "delete", SnapshotState.DELETING,
                           frozenset({SnapshotState.READY, SnapshotState.ERROR,
                                      SnapshotState.CREATING, SnapshotState.DELETING}))
    await _send(request.app, vm.node, DeleteSnapshot(
        command_id=str(uuid.uuid4()), vm_id=vm.id, snapshot_id=snap.id))
    return _snapshot_response(vm, snap)


# --- clone -----------------------------------------------------------------------------------

def _source_snapshot(vm: VmRecord, ref: str | None) -> str:
    if ref is None:
        return ""
    snap = find_snapshot(vm, ref)
    if snap.state != SnapshotState.READY:
        raise SnapshotNotReady(f"snapshot {snap.name!r} is {snap.state}", vm_id=vm.id,
                               snapshot=snap.name, state=snap.state)
    return snap.id


def _check_copyable(vm: VmRecord, action: str) -> None:
    require_day2_state(vm, action)
    if vm.os_type == "windows":
        raise CloneRefused(
            f"VM {vm.name!r} is Windows: a copy needs sysprep to get a new identity",
            hint="Generalize the guest with sysprep and upload its disk as an image instead.",
            vm_id=vm.id)


def clone_record(source: VmRecord, *, vm_id: str, body: CloneVmRequest,
                 snapshot_id: str, linked: bool) -> VmRecord:
    """The clone's record: the source's shape, a new identity (id = instance-id, name and
    hostname, MAC derived from the id, forwards chosen again by the node), its system disk
    only (no extra disks, an empty media drive), never a template."""
    now = utcnow()
    network = msgspec.structs.replace(source.network, forwards=tuple(
        PortForward(guest_port=f.guest_port, name=f.name) for f in source.network.forwards))
    return msgspec.structs.replace(
        source, id=vm_id, name=body.name, description=body.description,
        state=VmState.PENDING, cloud_init=msgspec.structs.replace(
            source.cloud_init, hostname=body.name),
        network=network, instance_id=vm_id, created_at=now, updated_at=now, vnc=None,
        forwards=(), ssh_command="", serial_log="", guest=GuestInfo(), error=None,
        image_progress=None, holds_resources=True, snapshots=(), template=False,
        # Only the system disk is cloned: the source's extra disks and media are its own
        # (the clone's definition would name files in the clone's directory that do not exist).
        disks=(), media=None,
        clone_of=CloneSource(vm_id=source.id, snapshot_id=snapshot_id, linked=linked))


def _linked(source: VmRecord, body: CloneVmRequest) -> bool:
    """Linked or full: asked, or by default linked for a template and full otherwise (as in
    Proxmox: a linked clone of a VM lives as long as the snapshot it is made at)."""
    return source.template if body.linked is None else body.linked


def _base_snapshot_name(source: VmRecord, clone_name: str, snapshot_id: str) -> str:
    """The name of the snapshot a linked clone without a chosen one is made at: says which
    clone it is for (``clone-NAME``), unique among the source's snapshots."""
    name = f"clone-{clone_name}"[:63]
    if any(s.name == name for s in source.snapshots):
        name = f"{name[:54]}-{snapshot_id[:8]}"
    return name


async def _snapshot_for_clone(app: web.Application, source: VmRecord,
                              body: CloneVmRequest) -> VmSnapshot:
    """A linked clone of a VM that is not a template, no snapshot chosen: a new disk-only
    snapshot of it now (quiesced when its agent answers), listed on the source like any
    other, the base the clone is linked to. Its command is queued too; the clone's create
    takes it itself if it comes first (the node's ``clone.py``)."""
    snap_id = str(uuid.uuid4())
    added: list[VmSnapshot] = []

    def add(current: VmRecord) -> VmRecord:
        require_day2_state(current, "snapshot")
        snap = VmSnapshot(id=snap_id, name=_base_snapshot_name(current, body.name, snap_id),
                          description=f"base of linked clone {body.name}", created_at=utcnow())
        added[:] = [snap]
        return msgspec.structs.replace(current, snapshots=(*current.snapshots, snap))

    updated = await write_record(app, source, add)
    await _send(app, updated.node, CreateSnapshot(
        command_id=str(uuid.uuid4()), vm_id=updated.id, snapshot_id=snap_id))
    log.info("snapshot for a linked clone accepted", vm_id=updated.id, snapshot_id=snap_id)
    return added[0]


async def clone_vm(request: web.Request) -> web.Response:
    """POST /v1/vms/{vm}/clone: 202 with the new VM's record (``pending``) on the source's
    node; its create copies the source's disk first."""
    app = request.app
    body = await decode_body(request, CloneVmRequest)
    source = await resolve(app, request.match_info["vm"])
    _check_copyable(source, "clone")
    snapshot_id = _source_snapshot(source, body.snapshot)
    linked = _linked(source, body)
    view = app[app_keys.VM_VIEW]
    if view.by_name(body.name) is not None:
        raise vm_name_taken(body.name)
    # The disk (a linked clone's backing file) is on the source's node: the clone goes there
    # or nowhere. Refused here, before a snapshot is taken for nothing.
    placement.place(vcpus=source.vcpus, memory_mib=source.memory_mib, explicit=source.node,
                    nodes=app[app_keys.NODE_VIEW].live(), used=app[ALLOCATIONS].view.used())
    if linked and not snapshot_id and not source.template:
        # Only a frozen base can back a linked clone: a VM that still changes is frozen at a
        # snapshot taken now (a template's disk is frozen already).
        snapshot_id = (await _snapshot_for_clone(app, source, body)).id
    vm_id = str(uuid.uuid4())
    # The decision, as for a create: a compare-and-set reservation on the node's allocation.
    node = await placement.place_and_reserve(
        app, vm_id=vm_id, vcpus=source.vcpus, memory_mib=source.memory_mib,
        explicit=source.node, nodes=app[app_keys.NODE_VIEW].live())
    record = clone_record(source, vm_id=vm_id, body=body, snapshot_id=snapshot_id,
                          linked=linked)
    view.reserve(record)
    try:
        revision = await app[app_keys.VM_STORE].create(record)
    except BaseException as exc:
        view.release(record.id)
        await release_reservation(app, node, vm_id)
        if isinstance(exc, Conflict):
            raise name_taken_by_store(app, body.name) from None
        raise
    view.put(record, revision)
    js = app[app_keys.JETSTREAM]
    try:  # the record is the outbox: the create sweeper sends the create if this fails
        await publish_event(js, VmStateChanged(
            vm_id=record.id, name=record.name, node=record.node, state=VmState.PENDING,
            reason=f"cloned from {source.name}"))
        await send_command(js, record.node, CreateVm(command_id=str(uuid.uuid4()),
                                                     vm_id=record.id))
    except nats.errors.Error as exc:
        log.warning("clone not queued yet; the sweeper will send it", vm_id=record.id,
                    error=repr(exc))
    log.info("clone accepted", vm_id=record.id, source=source.id, linked=linked)
    body_bytes = view.public_json(record)
    return web.Response(body=body_bytes, status=202, content_type="application/json",
                        headers={"Location": f"/v1/vms/{record.id}"})


# --- template --------------------------------------------------------------------------------

async def make_template(request: web.Request) -> web.Response:
    """POST /v1/vms/{vm}/template: 200 with the record, now a template (a stopped VM only;
    again on a template: the same answer)."""
    app = request.app
    vm = await resolve(app, request.match_info["vm"])
    changed: list[bool] = [False]

    def freeze(current: VmRecord) -> VmRecord:
        if current.template:
            changed[0] = False
            return current
        if current.state != VmState.STOPPED:
            raise IllegalTransition(
                f"cannot make VM {current.name!r} a template: it is {current.state}",
                hint=f"Stop it first: lq vm stop {current.name}.",
                vm_id=current.id, state=current.state, action="template")
        if current.os_type == "windows":
            raise CloneRefused(f"VM {current.name!r} is Windows: its clones need sysprep",
                               vm_id=current.id)
        if any(s.state in _BUSY for s in current.snapshots):
            raise SnapshotNotReady(f"a snapshot of VM {current.name!r} is being changed",
                                   vm_id=current.id)
        changed[0] = True
        return msgspec.structs.replace(current, template=True, updated_at=utcnow())

    updated = await write_record(app, vm, freeze)
    if changed[0]:
        try:
            await publish_event(app[app_keys.JETSTREAM], VmTemplated(
                vm_id=updated.id, name=updated.name, node=updated.node))
        except nats.errors.Error as exc:  # the record says it: the event is a courtesy
            log.warning("vm.templated not announced", vm_id=updated.id, error=repr(exc))
        log.info("vm is a template", vm_id=updated.id)
    return web.Response(body=app[app_keys.VM_VIEW].public_json(updated), status=200,
                        content_type="application/json")


# --- publish ---------------------------------------------------------------------------------

def _generalize(vm: VmRecord, body: PublishVmRequest, snapshot_id: str) -> bool:
    """Whether the node cleans the guest's identity first: asked, or by default when it can
    (the VM runs with its agent connected and the current disk is published)."""
    possible = vm.state in _UP and vm.guest.agent.connected
    if body.generalize is None:
        return possible and not snapshot_id
    if body.generalize and snapshot_id:
        raise GeneralizeUnavailable(
            "a snapshot cannot be generalized: the guest's cleaning changes the current disk",
            hint="Publish the current disk (omit the snapshot), or --no-generalize.",
            vm_id=vm.id)
    if body.generalize and not possible:
        raise GeneralizeUnavailable(
            f"VM {vm.name!r} is {vm.state}"
            + ("" if vm.state not in _UP else " without a connected guest agent")
            + ": its identity can only be cleaned from inside the running guest",
            vm_id=vm.id)
    return body.generalize


async def publish_vm(request: web.Request) -> web.Response:
    """POST /v1/vms/{vm}/publish: 202 with the new image's record (``queued``); the node
    flattens the disk and uploads it (``uploading`` → ``verifying`` → ``active``)."""
    app = request.app
    body = await decode_body(request, PublishVmRequest)
    vm = await resolve(app, request.match_info["vm"])
    _check_copyable(vm, "publish")
    snapshot_id = _source_snapshot(vm, body.snapshot)
    generalize = _generalize(vm, body, snapshot_id)
    client = image_library_client(app)
    os_name, version, user = body.os, body.version, vm.cloud_init.user
    if vm.image and not body.os:
        try:
            source_image = await client.get(vm.image)
            os_name, version = source_image.os, body.version or source_image.version
        except LimiquantixError:
            pass  # a node path or a deleted image: the new one has no os
    principal = principal_of(request).id
    image: ImageRecord = await client.create_upload(CreateImageRequest(
        name=body.name, format="qcow2", os=os_name, version=version, default_user=user,
        labels={"published-from": vm.id, "generalized": str(generalize).lower()}),
        created_by=principal)
    token = sign(app[app_keys.LIBRARY_SECRET], service="gateway", image_id=image.id,
                 method="PUT", subject=principal, ttl_s=PUBLISH_TOKEN_TTL_S)
    await _send(app, vm.node, PublishVm(
        command_id=str(uuid.uuid4()), vm_id=vm.id, image_id=image.id, upload_token=token,
        snapshot_id=snapshot_id or None, generalize=generalize))
    log.info("publish accepted", vm_id=vm.id, image_id=image.id, generalize=generalize)
    return json_response(image, status=202, headers={"Location": f"/v1/images/{image.id}"})


# --- registration ----------------------------------------------------------------------------

_SNAP = "/v1/vms/{vm}/snapshots/{snap}"
OPENAPI = OpenApiPart(tag="snapshots", operations=(
    Operation(method="POST", path="/v1/vms/{vm}/snapshots",
              summary="Take a snapshot (disk; with memory: true also RAM and devices)",
              body=CreateSnapshotRequest, response=VmSnapshot, status=202,
              errors=(404, 409, 422),
              description="202 with the snapshot (`creating`); `vm.snapshot` events say when "
                          "it is `ready`. 409 `illegal_transition` (VM not running/stopped), "
                          "`snapshot_refused` (memory of a stopped VM; a running UEFI VM), "
                          "`snapshot_name_taken`."),
    Operation(method="GET", path="/v1/vms/{vm}/snapshots", summary="The VM's snapshots",
              response=SnapshotList, errors=(404,)),
    Operation(method="GET", path=_SNAP, summary="One snapshot, by name or id",
              response=VmSnapshot, errors=(404,)),
    Operation(method="POST", path=f"{_SNAP}/revert", summary="Revert the VM to a snapshot",
              response=VmSnapshot, status=202, errors=(404, 409),
              description="A memory snapshot resumes the guest where it was; a disk-only one "
                          "restores the disk and boots the VM again if it was running."),
    Operation(method="DELETE", path=_SNAP, summary="Delete a snapshot",
              response=VmSnapshot, status=202, errors=(404, 409),
              description="409 `snapshot_in_use` while linked clones made at it exist (they "
                          "are named); its frozen base is deleted with it."),
    Operation(method="POST", path="/v1/vms/{vm}/template",
              summary="Make a stopped VM a template (frozen; the base of linked clones)",
              response=VmRecord, errors=(404, 409),
              description="200 with the record (`template: true`). A template is never "
                          "started, resized or snapshotted (409 `template_refused`) and is "
                          "deleted only without linked clones (409 `template_in_use`). 409 "
                          "`illegal_transition` when the VM is not stopped."),
    Operation(method="POST", path="/v1/vms/{vm}/clone",
              summary="Clone a VM (new id, MAC, hostname; cloud-init runs as a new instance)",
              body=CloneVmRequest, response=VmRecord, status=202, errors=(404, 409, 422),
              description="202 with the clone's record (`pending`), on the source's node. "
                          "Linked (the default for a template): a qcow2 overlay (instant) over "
                          "a frozen base: the template's disk, or the snapshot's base (the "
                          "snapshot's disk state written once, read-only, on the node, shared "
                          "by every linked clone made at it). A linked clone of a VM that is "
                          "not a template, without `snapshot`, is made at a new snapshot "
                          "`clone-NAME` taken now (listed on the source). A snapshot (or VM) "
                          "with linked clones is not deleted: 409 `snapshot_in_use`."),
    Operation(method="POST", path="/v1/vms/{vm}/publish",
              summary="Publish the VM's disk as a new image (a template)",
              body=PublishVmRequest, response=ImageRecord, status=202, errors=(404, 409, 422),
              description="202 with the image (`queued`); it is `active` once the node "
                          "uploaded and the library verified it (`vm.publish_progress`, "
                          "`image.*` events); a failed publish leaves it `error`. `generalize` "
                          "(default when the guest agent answers) cleans the guest's identity "
                          "and shuts it down first; label `generalized` says which."),
))


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/vms/{vm}/snapshots", create_snapshot)
    app.router.add_get("/v1/vms/{vm}/snapshots", list_snapshots)
    app.router.add_get(_SNAP, get_snapshot)
    app.router.add_post(f"{_SNAP}/revert", revert_snapshot)
    app.router.add_delete(_SNAP, delete_snapshot)
    app.router.add_post("/v1/vms/{vm}/template", make_template)
    app.router.add_post("/v1/vms/{vm}/clone", clone_vm)
    app.router.add_post("/v1/vms/{vm}/publish", publish_vm)
