"""Inside a VM through its QEMU guest agent (docs/guest-agent.md): run a program, copy a file in
or out, set a user's password. The VM's node does the work (``common.guest_rpc`` over NATS).

An agent that is not connected (per the record, ``guest.agent.connected``) is a 409
``agent_unavailable`` at once, without asking the node. Each action is audited as a
``vm.guest_access`` event: who, what (the program without its arguments, the path, the guest
user), how many bytes; never contents. Every route needs the operator role, reading a file too:
a guest's files are not the record's metadata.
"""

from __future__ import annotations

import base64
import hashlib
from typing import TypeVar

import msgspec
import structlog
from aiohttp import web

from limiquantix.api import app_keys
from limiquantix.api.auth import principal_of
from limiquantix.api.errors import Forbidden, NodeUnavailable
from limiquantix.api.http_json import decode_body, json_response
from limiquantix.api.openapi import OpenApiPart, Operation, Param
from limiquantix.api.routes_vms import resolve
from limiquantix.common import rpc, subjects
from limiquantix.common.api_tokens import ROLE_RANK, Role
from limiquantix.common.errors import InvalidRequest, LimiquantixError, Unavailable
from limiquantix.common.events import VmGuestAccess
from limiquantix.common.guest_rpc import (
    FILE_CHUNK_BYTES,
    GUEST_EXEC,
    GUEST_FILE_CLOSE,
    GUEST_FILE_OPEN,
    GUEST_FILE_READ,
    GUEST_FILE_WRITE,
    GUEST_PASSWORD,
    SLOW_OP_TIMEOUT_S,
    AgentUnavailable,
    Done,
    ExecRequest,
    ExecResult,
    FileChunk,
    FileCloseCall,
    FileOpenCall,
    FileOpened,
    FileReadCall,
    FileWriteCall,
    FileWritten,
    FileWrote,
    GuestExecCall,
    GuestExecReply,
    GuestFileTooLarge,
    GuestPasswordCall,
    PasswordRequest,
    PasswordResult,
)
from limiquantix.common.model import Model
from limiquantix.common.publish import publish_event
from limiquantix.common.vms import VmRecord, VmState

log = structlog.get_logger()

R = TypeVar("R")

EXEC_MARGIN_S = 20.0  # the node's own polling and NATS on top of the command's timeout
_UP = frozenset({VmState.RUNNING, VmState.READY})


def _agent_ready(vm: VmRecord) -> None:
    """409 agent_unavailable unless the VM runs and its agent is connected."""
    if vm.state not in _UP:
        raise AgentUnavailable(f"VM {vm.name!r} is {vm.state}: its guest agent is not running",
                               vm_id=vm.id, state=vm.state,
                               hint=f"Start the VM first (lq vm start {vm.name}).")
    if not vm.guest.agent.connected:
        raise AgentUnavailable(f"VM {vm.name!r} has no connected guest agent", vm_id=vm.id)


async def _ask(app: web.Application, vm: VmRecord, op: str, body: Model, reply: type[R], *,
               timeout_s: float = SLOW_OP_TIMEOUT_S) -> R:
    """Ask the VM's node; file chunks and passwords wait longer than a query (the agent works
    in the guest, slowly under TCG), exec its own timeout plus a margin."""
    timeout = max(timeout_s, app[app_keys.SETTINGS].request_timeout_s)
    try:
        return await rpc.request(app[app_keys.NATS], subjects.node_rpc(vm.node, op), body, reply,
                                 timeout_s=timeout)
    except Unavailable:
        raise NodeUnavailable(f"node {vm.node!r} did not answer within {timeout:g} s",
                              node=vm.node, vm_id=vm.id) from None


async def _audit(request: web.Request, vm: VmRecord, action: str, *, target: str,
                 size: int = 0, exit_code: int | None = None, error: str = "") -> None:
    event = VmGuestAccess(vm_id=vm.id, name=vm.name, node=vm.node, action=action,
                          user=principal_of(request).name, target=target[:512], bytes=size,
                          exit_code=exit_code, error=error)
    log.info("guest access", vm_id=vm.id, action=action, target=target[:512], bytes=size,
             user=event.user, error=error or None)
    await publish_event(request.app[app_keys.JETSTREAM], event, best_effort=True)


def _code(exc: LimiquantixError) -> str:
    """The stable code, also of an error the node answered (RemoteError keeps it in reply)."""
    return exc.to_reply().code


async def _vm(request: web.Request) -> VmRecord:
    vm = await resolve(request.app, request.match_info["vm"])
    _agent_ready(vm)
    return vm


def _json(value: Model, status: int = 200) -> web.Response:
    return json_response(value, status=status)  # every field, defaults included


# --- exec ------------------------------------------------------------------------------------

async def exec_command(request: web.Request) -> web.Response:
    """POST /v1/vms/{vm}/exec: run a program in the guest and wait for it."""
    body = await decode_body(request, ExecRequest)
    vm = await _vm(request)
    call = GuestExecCall(vm_id=vm.id, command=body.command, input=body.input,
                         timeout_s=body.timeout_s)
    try:
        reply = await _ask(request.app, vm, GUEST_EXEC, call, GuestExecReply,
                           timeout_s=body.timeout_s + EXEC_MARGIN_S)
    except LimiquantixError as exc:
        await _audit(request, vm, "exec", target=body.command[0], error=_code(exc))
        raise
    result = reply.result()
    await _audit(request, vm, "exec", target=body.command[0], exit_code=result.exit_code,
                 size=len(result.stdout) + len(result.stderr))
    return _json(result)


# --- files -----------------------------------------------------------------------------------

def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    try:
        return msgspec.convert({"vm_id": "-", "path": path}, FileOpenCall).path
    except msgspec.ValidationError:
        raise InvalidRequest(f"path must be an absolute path in the guest, got {path!r}",
                             hint="Give ?path=/abs/path (URL-encoded).") from None


def _limit(request: web.Request) -> int:
    return request.app[app_keys.SETTINGS].guest_file_max_bytes


def _too_large(limit: int) -> GuestFileTooLarge:
    return GuestFileTooLarge(f"the file is larger than LQ_GUEST_FILE_MAX_BYTES ({limit} bytes)",
                             limit=limit)


async def put_file(request: web.Request) -> web.Response:
    """PUT /v1/vms/{vm}/files?path=: the body (streamed) becomes the guest's file."""
    path = _path(request)
    mode, owner = request.query.get("mode", ""), request.query.get("owner", "")
    try:  # checked before anything is opened in the guest
        close = msgspec.convert({"vm_id": "-", "handle": 0, "mode": mode, "owner": owner,
                                 "path": path}, FileCloseCall)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"mode must be octal (e.g. 0644), owner user[:group]: {exc}"
                             ) from None
    limit = _limit(request)
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    vm = await _vm(request)
    app = request.app
    opened = await _ask(app, vm, GUEST_FILE_OPEN,
                        FileOpenCall(vm_id=vm.id, path=path, mode="w"), FileOpened)
    digest, size = hashlib.sha256(), 0
    try:
        buffer = bytearray()
        async for data in request.content.iter_chunked(FILE_CHUNK_BYTES):
            size += len(data)
            if size > limit:
                raise _too_large(limit)
            digest.update(data)
            buffer += data
            while len(buffer) >= FILE_CHUNK_BYTES:
                await _write(app, vm, opened.handle, bytes(buffer[:FILE_CHUNK_BYTES]))
                del buffer[:FILE_CHUNK_BYTES]
        if buffer:
            await _write(app, vm, opened.handle, bytes(buffer))
    except LimiquantixError as exc:
        await _close_quietly(app, vm, opened.handle)
        await _audit(request, vm, "file_write", target=path, size=size, error=_code(exc))
        raise
    await _ask(app, vm, GUEST_FILE_CLOSE, msgspec.structs.replace(
        close, vm_id=vm.id, handle=opened.handle), Done)
    await _audit(request, vm, "file_write", target=path, size=size)
    return _json(FileWritten(path=path, size=size, sha256=digest.hexdigest()), 201)


async def _write(app: web.Application, vm: VmRecord, handle: int, data: bytes) -> None:
    call = FileWriteCall(vm_id=vm.id, handle=handle, data_b64=base64.b64encode(data).decode())
    wrote = await _ask(app, vm, GUEST_FILE_WRITE, call, FileWrote)
    if wrote.count != len(data):
        raise LimiquantixError(f"the guest agent wrote {wrote.count} of {len(data)} bytes")


async def _close_quietly(app: web.Application, vm: VmRecord, handle: int) -> None:
    try:
        await _ask(app, vm, GUEST_FILE_CLOSE, FileCloseCall(vm_id=vm.id, handle=handle), Done)
    except LimiquantixError as exc:
        log.warning("guest file not closed", vm_id=vm.id, handle=handle, error=_code(exc))


async def get_file(request: web.Request) -> web.StreamResponse:
    """GET /v1/vms/{vm}/files?path=: the guest's file, streamed as it is read."""
    principal = principal_of(request)
    if ROLE_RANK[principal.role] < ROLE_RANK[Role.OPERATOR]:
        raise Forbidden(f"token {principal.name!r} is {principal.role}; reading a guest's files "
                        "needs operator", role=str(principal.role), needed="operator")
    path = _path(request)
    vm = await _vm(request)
    app = request.app
    opened = await _ask(app, vm, GUEST_FILE_OPEN,
                        FileOpenCall(vm_id=vm.id, path=path, mode="r"), FileOpened)
    limit, size = _limit(request), 0
    response: web.StreamResponse | None = None
    try:
        while True:
            chunk = await _ask(app, vm, GUEST_FILE_READ,
                               FileReadCall(vm_id=vm.id, handle=opened.handle), FileChunk)
            data = base64.b64decode(chunk.data_b64)
            size += len(data)
            if size > limit:  # after the headers the only way to say so is to cut it short
                raise _too_large(limit)
            if response is None:
                response = web.StreamResponse(headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Disposition": f"attachment; filename=\"{_basename(path)}\""})
                if chunk.eof:
                    response.content_length = len(data)
                await response.prepare(request)
            if data:
                await response.write(data)
            if chunk.eof or not data:
                break
    except LimiquantixError as exc:
        await _close_quietly(app, vm, opened.handle)
        await _audit(request, vm, "file_read", target=path, size=size, error=_code(exc))
        if response is not None:  # headers sent: cut the stream
            raise ConnectionResetError(str(exc)) from None
        raise
    await _close_quietly(app, vm, opened.handle)
    await _audit(request, vm, "file_read", target=path, size=size)
    assert response is not None
    await response.write_eof()
    return response


def _basename(path: str) -> str:
    name = path.replace("\\", "/").rsplit("/", 1)[-1] or "file"
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:128]


# --- password --------------------------------------------------------------------------------

async def set_password(request: web.Request) -> web.Response:
    """POST /v1/vms/{vm}/password: set a guest user's password (never stored, logged or sent
    in events)."""
    body = await decode_body(request, PasswordRequest)
    vm = await _vm(request)
    try:
        await _ask(request.app, vm, GUEST_PASSWORD,
                   GuestPasswordCall(vm_id=vm.id, user=body.user, password=body.password), Done)
    except LimiquantixError as exc:
        await _audit(request, vm, "password", target=body.user, error=_code(exc))
        raise
    await _audit(request, vm, "password", target=body.user)
    return _json(PasswordResult(user=body.user))


# --- registration ----------------------------------------------------------------------------

_PATH = Param(name="path", description="absolute path in the guest, e.g. /etc/hostname")
_AGENT = (" 409 `agent_unavailable` when the VM's guest agent is not connected "
          "(guest.agent.connected).")

OPENAPI = OpenApiPart(tag="guest", operations=(
    Operation(method="POST", path="/v1/vms/{vm}/exec",
              summary="Run a program in the guest through its agent and wait for it",
              body=ExecRequest, response=ExecResult, errors=(404, 409, 422, 502, 503, 504),
              description="No shell: `command` is the program and its arguments. Output is "
                          "bounded (256 KiB; `truncated`); 504 `guest_exec_timeout` after "
                          "`timeout_s`." + _AGENT),
    Operation(method="PUT", path="/v1/vms/{vm}/files",
              summary="Write a file in the guest (body = the bytes, streamed)",
              response=FileWritten, status=201, errors=(404, 409, 413, 422, 502, 503),
              params=(_PATH,
                      Param(name="mode", description="octal mode set after writing, e.g. 0600"),
                      Param(name="owner", description="user[:group] set after writing")),
              description="Body: application/octet-stream, at most LQ_GUEST_FILE_MAX_BYTES "
                          "(413 `guest_file_too_large`)." + _AGENT),
    Operation(method="GET", path="/v1/vms/{vm}/files",
              summary="Read a file from the guest (streamed back; needs operator)",
              media_type="application/octet-stream", errors=(403, 404, 409, 413, 502, 503),
              params=(_PATH,), description="404 `guest_file_not_found`." + _AGENT),
    Operation(method="POST", path="/v1/vms/{vm}/password",
              summary="Set a guest user's password through the agent",
              body=PasswordRequest, response=PasswordResult, errors=(404, 409, 422, 502, 503),
              description="The password is hashed by the guest; it is not stored, logged or "
                          "put in events." + _AGENT),
))


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/vms/{vm}/exec", exec_command)
    app.router.add_put("/v1/vms/{vm}/files", put_file)
    app.router.add_get("/v1/vms/{vm}/files", get_file)
    app.router.add_post("/v1/vms/{vm}/password", set_password)



