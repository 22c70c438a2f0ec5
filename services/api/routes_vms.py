"""``/v1/vms``: create (placed, idempotent), list, get, delete, lifecycle actions, cloud-init.

The gateway writes a new record (``pending``) or a transitional state with compare-and-set, tells
subscribers (``vm.state_changed``), then queues the command for the VM's node; the node agent
records what really happened. Records are answered through ``public_view`` (no password hash),
encoded once per version by the VM view.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import nats.errors
import structlog
from aiohttp import web

from limiquantix.api import app_keys, paging, placement, templates, vm_image, vm_listing
from limiquantix.api.allocation_store import ALLOCATIONS
from limiquantix.api.create_sweeper import sweeper_ctx
from limiquantix.api.errors import (
    IdempotencyInProgress,
    IllegalTransition,
    NameTaken,
    NodeUnavailable,
    VmNotFound,
)
from limiquantix.api.http_json import decode_body
from limiquantix.api.idempotency import IdempotencyKeys, body_hash
from limiquantix.api.openapi import OpenApiPart, Operation, Param
from limiquantix.api.schemas import VmList
from limiquantix.api.vm_devices import check_ceilings
from limiquantix.common import (
    cloud_init,
    forward_ports,
    node_rpc,
    rpc,
    subjects,
    vm_transition,
    windows,
)
from limiquantix.common.commands import (
    Command,
    CreateVm,
    DeleteVm,
    PauseVm,
    RebootVm,
    ResumeVm,
    StartVm,
    StopVm,
    UpdateCloudInit,
)
from limiquantix.common.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    Unavailable,
)
from limiquantix.common.events import VmDeleted, VmStateChanged
from limiquantix.common.library_tokens import node_key
from limiquantix.common.model import utcnow
from limiquantix.common.node_rpc import ConsoleLogRequest
from limiquantix.common.publish import publish_event, send_command
from limiquantix.common.vms import (
    TRANSITIONS,
    CloudInitRequest,
    CloudInitSpec,
    CreateVmRequest,
    NetworkSpec,
    VmAction,
    VmError,
    VmRecord,
    VmState,
)
from limiquantix.image_library.client import ImageLibraryClient

log = structlog.get_logger()

IDEMPOTENCY = web.AppKey("idempotency_keys", IdempotencyKeys)
VM_ORDER = web.AppKey("vm_order", vm_listing.VmOrder)  # the VM list's sorted order
# How long a repeated request waits for the VM its twin is creating.
IDEMPOTENT_WAIT_S = 5.0
_REF = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


# --- lookups ---------------------------------------------------------------------------------

async def resolve(app: web.Application, ref: str) -> VmRecord:
    """The VM whose id or name is ``ref`` (the watched view first, then the store)."""
    if not _REF.match(ref):
        raise VmNotFound(f"no VM has the id or name {ref!r}", vm=ref)
    view = app[app_keys.VM_VIEW]
    found = view.get(ref) or view.by_name(ref)
    if found is not None:
        return found
    store = app[app_keys.VM_STORE]
    found = await store.find(ref)
    if found is None:
        vm_id = await store.id_for_name(ref)
        found = await store.find(vm_id) if vm_id else None
    if found is None:
        raise VmNotFound(f"no VM has the id or name {ref!r}", vm=ref)
    return found


# States a node's absence does not make doubtful: the gateway's own, or waiting for the node.
_NODE_INDEPENDENT = frozenset({VmState.PENDING, VmState.DELETING})


def presented(app: web.Application, record: VmRecord) -> VmRecord:
    """The record as answered: ``unknown`` while its node is offline (its state may have
    changed since the node last said), the stored state otherwise."""
    if (record.state in _NODE_INDEPENDENT or not record.node
            or app[app_keys.NODE_VIEW].live_node(record.node) is not None):
        return record
    return msgspec.structs.replace(record, state=VmState.UNKNOWN)


def _vm_response(
    app: web.Application, record: VmRecord, status: int = 200
) -> web.Response:
    headers = {"Location": f"/v1/vms/{record.id}"} if status == 202 else None
    body = app[app_keys.VM_VIEW].public_json(presented(app, record))
    return web.Response(body=body, status=status, content_type="application/json",
                        headers=headers)


def image_library_client(app: web.Application) -> ImageLibraryClient:
    """The image library over NATS, with the gateway's request timeout."""
    return ImageLibraryClient(app[app_keys.NATS],
                              timeout_s=app[app_keys.SETTINGS].request_timeout_s)


# --- create ----------------------------------------------------------------------------------

async def create_vm(request: web.Request) -> web.Response:
    """POST /v1/vms."""
    body = await decode_body(request, CreateVmRequest)
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return _vm_response(
            request.app, await _create(request.app, body, str(uuid.uuid4())), 202
        )
    keys = request.app[IDEMPOTENCY]
    digest = body_hash(body, request.app[app_keys.API_TOKEN])
    deadline = time.monotonic() + IDEMPOTENT_WAIT_S
    while True:
        claim = await keys.claim(key, digest, str(uuid.uuid4()), vm_exists=_vm_exists(request.app))
        if claim.owned:
            store = request.app[app_keys.VM_STORE]
            try:
                record = await _create(request.app, body, claim.vm_id)
            except BaseException:
                # A claim taken over after its lease: the first owner may have made the VM.
                made = await store.find(claim.vm_id)
                if made is not None:
                    return _vm_response(request.app, made, 202)
                await keys.release(key)  # no VM came of it: a retry may create it
                raise
            return _vm_response(request.app, record, 202)
        existing = await _wait_for_record(request.app, keys, key, claim.vm_id, deadline)
        if existing is not None:
            return _vm_response(request.app, existing, 202)
        # The first request failed and released the key: this one may create the VM.


def _vm_exists(app: web.Application) -> Callable[[str], Awaitable[bool]]:
    async def exists(vm_id: str) -> bool:
        return (app[app_keys.VM_VIEW].get(vm_id) is not None
                or await app[app_keys.VM_STORE].find(vm_id) is not None)
    return exists


async def _wait_for_record(
    app: web.Application, keys: IdempotencyKeys, key: str, vm_id: str, deadline: float
) -> VmRecord | None:
    """The VM made under ``key``; None when its creator gave up (the key was released)."""
    while True:
        record = app[app_keys.VM_VIEW].get(vm_id) or await app[app_keys.VM_STORE].find(vm_id)
        if record is not None:
            return record
        if not await keys.still_claimed(key):
            return None
        if time.monotonic() > deadline:
            raise IdempotencyInProgress(
                "a request with this Idempotency-Key is still being processed", vm_id=vm_id
            )
        await asyncio.sleep(0.02)


async def _prepare_cloud_init(request: CloudInitRequest, vm_name: str) -> CloudInitSpec:
    if request.password:  # SHA-512 crypt is CPU work: keep it off the event loop
        return await asyncio.to_thread(cloud_init.prepare, request, vm_name=vm_name)
    return cloud_init.prepare(request, vm_name=vm_name)


async def _create(app: web.Application, body: CreateVmRequest, vm_id: str) -> VmRecord:
    forward_ports.check_host_ports((f.host_port for f in body.network.forwards),
                                   app[app_keys.SETTINGS])
    view = app[app_keys.VM_VIEW]
    if view.by_name(body.name) is not None:
        raise vm_name_taken(body.name)
    library = image_library_client(app)
    image = await vm_image.resolve_for_create(library, app[app_keys.SETTINGS], body.image,
                                              body.disk_gib)
    os_type = windows.os_type_for(body.os_type, image.os)
    windows.check_minimums(os_type, vcpus=body.vcpus, memory_mib=body.memory_mib,
                           disk_gib=body.disk_gib)
    check_ceilings(body.vcpus, body.memory_mib, body.max_vcpus, body.max_memory_mib)
    drivers = await vm_image.virtio_win(library) if os_type == "windows" else ""
    windows_spec = windows.prepare(body.windows, os_type, vm_id=vm_id, vm_name=body.name,
                                   node_key=node_key(app[app_keys.LIBRARY_SECRET]))
    spec = await _prepare_cloud_init(body.cloud_init, body.name)
    placement.place(  # refused here, before a download is started for nothing
        vcpus=body.vcpus, memory_mib=body.memory_mib, explicit=body.node,
        nodes=app[app_keys.NODE_VIEW].live(), used=app[ALLOCATIONS].view.used(),
    )
    await vm_image.start_download(library, image)
    now = utcnow()
    # The decision: a compare-and-set reservation on the node's allocation record, so
    # concurrent creates (here or on another gateway) never over-commit a node.
    node = await placement.place_and_reserve(
        app, vm_id=vm_id, vcpus=body.vcpus, memory_mib=body.memory_mib, explicit=body.node,
        nodes=app[app_keys.NODE_VIEW].live(),
    )
    record = VmRecord(
        id=vm_id, name=body.name, description=body.description, labels=body.labels,
        state=VmState.PENDING,
        node=node, image=image.ref,
        vcpus=body.vcpus, memory_mib=body.memory_mib, disk_gib=body.disk_gib, cloud_init=spec,
        max_vcpus=body.max_vcpus or body.vcpus,
        max_memory_mib=body.max_memory_mib or body.memory_mib,
        network=msgspec.convert(msgspec.to_builtins(body.network), NetworkSpec),
        instance_id=vm_id, created_at=now, updated_at=now, os_type=os_type,
        drivers_image=drivers, windows=windows_spec,
    )
    view.reserve(record)
    try:
        revision = await app[app_keys.VM_STORE].create(record)
    except BaseException as exc:
        view.release(vm_id)
        await release_reservation(app, node, vm_id)
        if isinstance(exc, Conflict):
            raise name_taken_by_store(app, body.name) from None
        raise
    view.put(record, revision)
    # From here the record is the create's outbox: the VM will be made even if what follows
    # fails now (the create sweeper sends the command again), so the client gets its 202.
    js = app[app_keys.JETSTREAM]
    try:
        await publish_event(js, VmStateChanged(
            vm_id=vm_id, name=record.name, node=node, state=VmState.PENDING, reason="created",
        ))
        await send_command(js, node, CreateVm(command_id=str(uuid.uuid4()), vm_id=vm_id))
    except nats.errors.Error as exc:
        log.warning("create not queued yet; the sweeper will send it", vm_id=vm_id,
                    error=repr(exc))
    log.info("vm accepted", vm_id=vm_id, name=record.name, node=node)
    return record


def vm_name_taken(name: str) -> NameTaken:
    """409: a VM this gateway sees has ``name``."""
    return NameTaken(f"a VM named {name!r} already exists", name=name)


def name_taken_by_store(app: web.Application, name: str) -> NameTaken:
    """The name is claimed, though this gateway may show no VM by it yet: another create of
    the name is under way, or one was cut off (its gateway died) before it wrote its record.
    Say which way out each case has, rather than "delete the existing VM" for a VM that the
    user cannot find."""
    if app[app_keys.VM_VIEW].by_name(name) is not None:
        return vm_name_taken(name)
    sweep_s = round(app[app_keys.SETTINGS].create_sweep_after_s)
    return NameTaken(
        f"the name {name!r} is held by another create that is under way or was interrupted",
        hint=(f"If GET /v1/vms/{name} still answers 404 after {sweep_s} s, an interrupted create "
              "held the name and it is free again: send the create once more. Send an "
              "Idempotency-Key so that a retried create answers its first attempt's VM."),
        name=name)


async def release_reservation(app: web.Application, node: str, vm_id: str) -> None:
    """Give back a reservation whose VM was not made (the allocation reconciler drops it
    anyway after a while if this fails)."""
    try:
        await asyncio.shield(placement.release(app, node_id=node, vm_id=vm_id))
    except Exception as exc:
        log.warning("reservation not released; the reconciler will", vm_id=vm_id,
                    error=repr(exc))


async def _queue_or_fail(app: web.Application, record: VmRecord, command: Command) -> None:
    """Queue ``command``; if JetStream will not take it, leave the VM in ``error`` and say so.

    ``send_command`` retries transient failures itself (the command id is the Nats-Msg-Id, so
    JetStream keeps one copy); what still fails is not going to work soon.
    """
    try:
        await send_command(app[app_keys.JETSTREAM], record.node, command)
        return
    except Exception as exc:
        log.warning("command publish failed", vm_id=record.id, error=str(exc))
    error = VmError(code="command_not_queued", message="the command could not be queued",
                    hint="Check NATS/JetStream, then delete the VM and create it again.")
    await app[app_keys.VM_STORE].update(
        record.id, lambda r: msgspec.structs.replace(r, state=VmState.ERROR, error=error))
    raise Unavailable(f"could not queue the command for VM {record.id!r}", vm_id=record.id)


# --- read ------------------------------------------------------------------------------------

async def list_vms(request: web.Request) -> web.Response:
    """GET /v1/vms?limit=&cursor=&node=&state=&label= (one page, in creation order)."""
    app = request.app
    items, next_cursor = vm_listing.list_page(
        app[VM_ORDER], request.query, request.query.getall("label", []),
        lambda vm: presented(app, vm))
    # Same bytes as encode(VmList(...)), joined from each record's cached JSON.
    view = app[app_keys.VM_VIEW]
    body = (b'{"items":[' + b",".join(view.public_json(vm) for vm in items)
            + b'],"next_cursor":' + msgspec.json.encode(next_cursor) + b"}")
    return web.Response(body=body, content_type="application/json")


async def get_vm(request: web.Request) -> web.Response:
    """GET /v1/vms/{vm} (id or name)."""
    return _vm_response(request.app, await resolve(request.app, request.match_info["vm"]))


# --- lifecycle -------------------------------------------------------------------------------

def _command_for(action: VmAction, vm: VmRecord, stop_timeout_s: float) -> Command:
    command_id = str(uuid.uuid4())
    match action:
        case VmAction.START if vm.state == VmState.PENDING:  # a failed create, tried again
            return CreateVm(command_id=command_id, vm_id=vm.id)
        case VmAction.START:
            return StartVm(command_id=command_id, vm_id=vm.id)
        case VmAction.STOP:
            return StopVm(command_id=command_id, vm_id=vm.id, timeout_s=stop_timeout_s)
        case VmAction.FORCE_STOP:
            return StopVm(command_id=command_id, vm_id=vm.id, force=True,
                          timeout_s=stop_timeout_s)
        case VmAction.REBOOT:
            return RebootVm(command_id=command_id, vm_id=vm.id)
        case VmAction.PAUSE:
            return PauseVm(command_id=command_id, vm_id=vm.id)
        case VmAction.RESUME:
            return ResumeVm(command_id=command_id, vm_id=vm.id)
        case VmAction.DELETE:
            return DeleteVm(command_id=command_id, vm_id=vm.id)


async def _transition(app: web.Application, ref: str, action: VmAction) -> VmRecord:
    """Record the transitional state of ``action`` and say so (``common.vm_transition``: CAS,
    ``vm.state_changed``); IllegalTransition if not allowed."""
    vm = await resolve(app, ref)
    if action == VmAction.START:  # a template's disk is its linked clones' base: frozen
        templates.refuse_change(vm, "started")
    elif action == VmAction.DELETE:
        templates.refuse_delete(app[app_keys.VM_VIEW], vm)
    recreate = action == VmAction.START and not vm.holds_resources
    if recreate:  # its create failed and released its room: it needs that room again
        await placement.place_and_reserve(
            app, vm_id=vm.id, vcpus=vm.vcpus, memory_mib=vm.memory_mib, explicit=vm.node,
            nodes=app[app_keys.NODE_VIEW].live())
    legal, target = TRANSITIONS[action]

    def illegal(current: VmRecord) -> IllegalTransition:
        return IllegalTransition(
            f"cannot {action} VM {current.name!r}: it is {current.state}",
            vm_id=current.id, state=current.state, action=str(action),
        )

    def change(current: VmRecord) -> VmRecord:
        if recreate and not current.holds_resources:  # its create is tried again
            return msgspec.structs.replace(current, state=VmState.PENDING, holds_resources=True)
        return current

    clears_error = action in (VmAction.START, VmAction.FORCE_STOP)
    try:
        done = await vm_transition.transition(
            app[app_keys.VM_STORE].records, app[app_keys.JETSTREAM], vm.id, target,
            only_from=legal, refuse=illegal, error=None if clears_error else vm_transition.KEEP,
            change=change, reason=f"{action} requested", announce=True,
        )
    except (NotFound, IllegalTransition) as exc:
        if recreate:
            await release_reservation(app, vm.node, vm.id)
        if isinstance(exc, NotFound):
            raise VmNotFound(f"VM {ref!r} no longer exists", vm=ref) from None
        raise
    assert done is not None  # a change is always written; a refusal raises
    app[app_keys.VM_VIEW].put_unrevisioned(done.after)
    return done.after


async def _act(request: web.Request, action: VmAction) -> web.Response:
    app = request.app
    updated = await _transition(app, request.match_info["vm"], action)
    command = _command_for(action, updated, app[app_keys.SETTINGS].stop_timeout_s)
    await _queue_or_fail(app, updated, command)
    log.info("vm action accepted", vm_id=updated.id, action=str(action), node=updated.node)
    return _vm_response(app, updated, 202)


def _action_handler(action: VmAction) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return await _act(request, action)

    handler.__name__ = f"vm_{action.value.replace('-', '_')}"
    handler.__doc__ = f"POST /v1/vms/{{vm}}/{action.value}."
    return handler


async def retry_vm(request: web.Request) -> web.Response:
    """POST /v1/vms/{vm}/retry: a VM in ``error`` tries again what failed once its cause is
    gone — the create when the failed create left nothing (``holds_resources`` false), else
    a start."""
    vm = await resolve(request.app, request.match_info["vm"])
    if vm.state != VmState.ERROR:
        raise IllegalTransition(
            f"only a VM in error can be retried; {vm.name!r} is {vm.state}",
            hint="Use the action you want (start, stop, ...) instead.",
            vm_id=vm.id, state=vm.state, action="retry")
    return await _act(request, VmAction.START)


async def delete_vm(request: web.Request) -> web.Response:
    """DELETE /v1/vms/{vm}?force=: 202; the node removes domain, files and record.

    ``force=true`` on a VM whose node is offline removes the record and name at once (from any
    state, ``deleting`` included) and leaves the node a forced delete for when it returns.
    """
    force = request.query.get("force", "false")
    if force not in ("true", "false"):
        raise InvalidRequest(f"force must be true or false, not {force!r}")
    app = request.app
    if force == "true":
        vm = await resolve(app, request.match_info["vm"])
        if app[app_keys.NODE_VIEW].live_node(vm.node) is None:
            return await _force_delete(app, vm)
    return await _act(request, VmAction.DELETE)


async def _force_delete(app: web.Application, vm: VmRecord) -> web.Response:
    templates.refuse_delete(app[app_keys.VM_VIEW], vm)
    await app[app_keys.VM_STORE].delete(vm)
    app[app_keys.VM_VIEW].forget(vm.id)
    js = app[app_keys.JETSTREAM]
    gone = msgspec.structs.replace(vm, state=VmState.DELETING)
    try:
        await publish_event(js, VmDeleted(vm_id=vm.id, name=vm.name, node=vm.node))
        await send_command(js, vm.node, DeleteVm(
            command_id=str(uuid.uuid4()), vm_id=vm.id, force=True))
    except nats.errors.Error as exc:  # the record is gone already: the delete stands
        log.warning("forced delete not announced", vm_id=vm.id, error=repr(exc))
    log.warning("vm force-deleted; its node is offline", vm_id=vm.id, node=vm.node)
    return _vm_response(app, gone, 202)


# --- cloud-init ------------------------------------------------------------------------------

async def update_cloud_init(request: web.Request) -> web.Response:
    """POST /v1/vms/{vm}/cloud-init: new settings and instance-id; applied at the next boot."""
    app = request.app
    body = await decode_body(request, CloudInitRequest)
    vm = await resolve(app, request.match_info["vm"])
    spec = await _prepare_cloud_init(body, vm.name)
    instance_id = cloud_init.new_instance_id(vm.id)

    def change(current: VmRecord) -> VmRecord:
        if current.state == VmState.DELETING:
            raise IllegalTransition(
                f"VM {current.name!r} is being deleted", vm_id=current.id, state=current.state,
                action="cloud-init",
            )
        return msgspec.structs.replace(current, cloud_init=spec, instance_id=instance_id)

    try:
        updated = await app[app_keys.VM_STORE].update(vm.id, change)
    except NotFound:
        raise VmNotFound(f"VM {vm.id!r} no longer exists", vm=vm.id) from None
    assert updated is not None
    app[app_keys.VM_VIEW].put_unrevisioned(updated)
    await _queue_or_fail(app, updated, UpdateCloudInit(
        command_id=str(uuid.uuid4()), vm_id=updated.id, cloud_init=spec, instance_id=instance_id,
    ))
    return _vm_response(app, updated, 202)


# --- console log ----------------------------------------------------------------------------

async def console_log(request: web.Request) -> web.Response:
    """GET /v1/vms/{vm}/console-log?max_bytes=: the serial log's tail, asked of the VM's node."""
    app = request.app
    vm = await resolve(app, request.match_info["vm"])
    try:
        max_bytes = int(request.query.get("max_bytes", node_rpc.DEFAULT_CONSOLE_LOG_BYTES))
        # convert() applies the schema's bounds (a Struct's constructor does not).
        query = msgspec.convert({"vm_id": vm.id, "max_bytes": max_bytes}, ConsoleLogRequest)
    except (ValueError, msgspec.ValidationError) as exc:
        raise InvalidRequest(
            f"max_bytes must be an integer from 1 to {node_rpc.MAX_CONSOLE_LOG_BYTES}: {exc}"
        ) from None
    timeout = app[app_keys.SETTINGS].request_timeout_s
    try:
        reply = await rpc.request(
            app[app_keys.NATS], subjects.node_rpc(vm.node, node_rpc.CONSOLE_LOG), query,
            node_rpc.ConsoleLogReply, timeout_s=timeout)
    except Unavailable:
        raise NodeUnavailable(
            f"node {vm.node!r} did not answer within {timeout:g} s", node=vm.node, vm_id=vm.id,
        ) from None
    return web.Response(
        text=reply.data, content_type="text/plain", charset="utf-8",
        headers={"X-Log-Size": str(reply.size), "X-Log-Truncated": str(reply.truncated).lower()},
    )


# --- registration ----------------------------------------------------------------------------

ACTIONS = (VmAction.START, VmAction.STOP, VmAction.FORCE_STOP, VmAction.REBOOT,
           VmAction.PAUSE, VmAction.RESUME)

OPENAPI = OpenApiPart(tag="vms", operations=(
    Operation(method="POST", path="/v1/vms", summary="Create a VM (placed, then queued)",
              body=CreateVmRequest, response=VmRecord, status=202, errors=(409,),
              params=(Param(name="Idempotency-Key", where="header",
                            description="Same key and body: the same VM, never a second"),),
              description="Answers 202 with the record (state `pending`) and a Location "
                          "header; 409 `no_capacity` / `name_taken`, 422 `unknown_node`."),
    Operation(method="GET", path="/v1/vms", summary="List VMs (a page, in creation order)",
              response=VmList, errors=(422,),
              params=(Param(name="state", description="only VMs in this state (as answered: "
                                                      "`unknown` while their node is offline)"),
                      Param(name="node", description="only VMs on this node"),
                      Param(name="label", description="only VMs with this label: `key` or "
                                                      "`key=value`; repeat to require several",
                            schema={"type": "array", "items": {"type": "string"}}),
                      Param(name="limit", schema={"type": "integer", "minimum": 1,
                                                  "maximum": paging.MAX_LIMIT},
                            description=f"at most this many (default {paging.DEFAULT_LIMIT})"),
                      Param(name="cursor", description="the `next_cursor` of the previous "
                                                       "page (opaque)"))),
    Operation(method="GET", path="/v1/vms/{vm}", summary="One VM, by id or name",
              response=VmRecord, errors=(404,)),
    Operation(method="DELETE", path="/v1/vms/{vm}", summary="Delete a VM (202; then gone)",
              response=VmRecord, status=202, errors=(404, 409, 422),
              params=(Param(name="force", schema={"type": "boolean"},
                            description="for a VM whose node is offline: remove it now; the "
                                        "node removes its domain and files if it returns"),)),
    *(Operation(method="POST", path=f"/v1/vms/{{vm}}/{action.value}",
                summary=f"{action.value} the VM", response=VmRecord, status=202,
                errors=(404, 409)) for action in ACTIONS),
    Operation(method="POST", path="/v1/vms/{vm}/retry",
              summary="Try again what failed (the create, or a start) for a VM in error",
              response=VmRecord, status=202, errors=(404, 409)),
    Operation(method="GET", path="/v1/vms/{vm}/console-log",
              summary="Tail of the serial console log (from the VM's node)",
              media_type="text/plain", errors=(404, 503),
              params=(Param(name="max_bytes", schema={"type": "integer", "minimum": 1},
                            description="at most this many bytes from the end"),)),
    Operation(method="POST", path="/v1/vms/{vm}/cloud-init",
              summary="Replace cloud-init settings; cloud-init runs again at the next boot",
              body=CloudInitRequest, response=VmRecord, status=202, errors=(404, 409)),
))


async def _idempotency_ctx(app: web.Application) -> AsyncIterator[None]:
    app[IDEMPOTENCY] = IdempotencyKeys(app[app_keys.IDEMPOTENCY_KV])
    app[VM_ORDER] = vm_listing.VmOrder(app[app_keys.VM_VIEW])
    yield


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/vms", create_vm)
    app.router.add_get("/v1/vms", list_vms)
    app.router.add_get("/v1/vms/{vm}", get_vm)
    app.router.add_delete("/v1/vms/{vm}", delete_vm)
    for action in ACTIONS:
        app.router.add_post(f"/v1/vms/{{vm}}/{action.value}", _action_handler(action))
    app.router.add_post("/v1/vms/{vm}/retry", retry_vm)
    app.router.add_post("/v1/vms/{vm}/cloud-init", update_cloud_init)
    app.router.add_get("/v1/vms/{vm}/console-log", console_log)
    app.cleanup_ctx.append(_idempotency_ctx)
    app.cleanup_ctx.append(sweeper_ctx)
