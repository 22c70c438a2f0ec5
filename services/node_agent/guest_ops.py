"""Acting inside a guest through its QEMU guest agent (docs/guest-agent.md): run a program, move
a file in chunks, set a user's password, freeze and thaw file systems.

The gateway asks these over NATS (``common.guest_rpc``, one subject per operation under
``subjects.node_rpc(node, op)``), answered by :class:`GuestOps`; the node's own code (snapshots)
calls :func:`freeze_filesystems` / :func:`thaw_filesystems`. Every libvirt call runs in a worker
thread; a command's wait (``guest-exec-status`` polls) is asynchronous.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import libvirt
import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from limiquantix.common import rpc, subjects
from limiquantix.common.errors import InvalidRequest, NotFound
from limiquantix.common.guest_rpc import (
    GUEST_EXEC,
    GUEST_FILE_CLOSE,
    GUEST_FILE_OPEN,
    GUEST_FILE_READ,
    GUEST_FILE_WRITE,
    GUEST_PASSWORD,
    MAX_EXEC_OUTPUT_BYTES,
    AgentUnavailable,
    Done,
    FileChunk,
    FileCloseCall,
    FileOpenCall,
    FileOpened,
    FileReadCall,
    FileWriteCall,
    FileWrote,
    GuestAgentError,
    GuestExecCall,
    GuestExecReply,
    GuestExecTimeout,
    GuestPasswordCall,
)
from limiquantix.common.vm_store import VmStore
from limiquantix.node_agent.guest_agent import (
    COMMAND_TIMEOUT_S,
    SLOW_COMMAND_TIMEOUT_S,
    agent_command,
    agent_error,
)
from limiquantix.node_agent.libvirt_host import LibvirtHost, domain_uuid

log = structlog.get_logger()

T = TypeVar("T")
S = TypeVar("S", bound=msgspec.Struct)

EXEC_POLL_FIRST_S = 0.05  # guest-exec-status polls: quick at first, then every half second
EXEC_POLL_MAX_S = 0.5


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text or "")


def exec_result(status: dict[str, Any], *, limit: int = MAX_EXEC_OUTPUT_BYTES,
                duration_s: float = 0.0) -> GuestExecReply:
    """An ended ``guest-exec-status`` as the reply: at most ``limit`` bytes of stdout and
    stderr together (stdout first)."""
    out, err = _unb64(status.get("out-data")), _unb64(status.get("err-data"))
    truncated = bool(status.get("out-truncated") or status.get("err-truncated"))
    if len(out) + len(err) > limit:
        truncated = True
        out = out[:limit]
        err = err[:max(0, limit - len(out))]
    signal = status.get("signal")
    return GuestExecReply(
        exit_code=None if signal is not None else status.get("exitcode"),
        signal=signal, stdout_b64=_b64(out), stderr_b64=_b64(err), truncated=truncated,
        duration_s=round(duration_s, 3))


def exec_arguments(call: GuestExecCall) -> dict[str, Any]:
    """``guest-exec``'s arguments: no shell, output captured, input on stdin."""
    arguments: dict[str, Any] = {"path": call.command[0], "arg": list(call.command[1:]),
                                 "capture-output": True}
    if call.input:
        arguments["input-data"] = _b64(call.input.encode())
    return arguments


def _decode(payload: bytes, kind: type[S]) -> S:
    try:
        return msgspec.json.decode(payload, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"invalid {kind.__name__}: {exc}") from None


async def _file_systems_call(host: LibvirtHost, dom_uuid: str, what: str, command: str,
                             call: Callable[[libvirt.virDomain], int]) -> int | None:
    """``call`` (libvirt's ``what``, the agent's ``command``) on the domain; the number of file
    systems it acted on, None when no domain has this UUID."""
    def op(dom: libvirt.virDomain) -> int:
        try:
            return int(call(dom))
        except libvirt.libvirtError as exc:
            raise agent_error(exc, command) from None
    if host.is_test_driver:
        raise AgentUnavailable("the test driver has no guest agent")
    return await host.agent_call(what, dom_uuid, op)


async def freeze_filesystems(host: LibvirtHost, dom_uuid: str) -> int:
    """Freeze the guest's file systems through its agent (before a disk snapshot); the number
    frozen. AgentUnavailable when no agent is connected: the caller decides to go on without."""
    frozen = await _file_systems_call(host, dom_uuid, "fsFreeze", "guest-fsfreeze-freeze",
                                      lambda dom: dom.fsFreeze())
    if frozen is None:
        raise AgentUnavailable(f"no domain {dom_uuid}")
    return frozen


async def thaw_filesystems(host: LibvirtHost, dom_uuid: str) -> int:
    """Thaw what :func:`freeze_filesystems` froze (always call it, even after a failure)."""
    thawed = await _file_systems_call(host, dom_uuid, "fsThaw", "guest-fsfreeze-thaw",
                                      lambda dom: dom.fsThaw())
    return thawed or 0


class GuestOps:
    """Answers the gateway's guest-agent operations for this node's VMs."""

    def __init__(self, host: LibvirtHost, store: VmStore, *, node_id: str) -> None:
        self._host = host
        self._store = store
        self._node_id = node_id

    async def _domain(self, vm_id: str) -> str:
        record = await self._store.find(vm_id)
        if record is None or record.node != self._node_id:
            raise NotFound(f"VM {vm_id!r} is not on node {self._node_id}", vm_id=vm_id)
        return domain_uuid(record.id)

    async def _on_agent(self, vm_id: str, what: str, op: Callable[[libvirt.virDomain], T]) -> T:
        dom_uuid = await self._domain(vm_id)
        if self._host.is_test_driver:
            raise AgentUnavailable("this node's libvirt driver (test:///) has no guest agent",
                                   vm_id=vm_id)
        result = await self._host.agent_call(what, dom_uuid, op)
        if result is None:
            raise AgentUnavailable(f"VM {vm_id!r} has no domain on this node", vm_id=vm_id)
        return result

    async def _command(self, vm_id: str, execute: str, arguments: dict[str, Any] | None = None,
                       *, slow: bool = False) -> Any:
        timeout_s = SLOW_COMMAND_TIMEOUT_S if slow else COMMAND_TIMEOUT_S
        return await self._on_agent(vm_id, execute, lambda dom: agent_command(
            dom, execute, arguments, timeout_s=timeout_s) or {})

    # -- exec --------------------------------------------------------------------------------
    async def run(self, call: GuestExecCall) -> GuestExecReply:
        """Run ``call.command`` and wait for it, up to ``call.timeout_s``."""
        started = time.monotonic()
        deadline = started + call.timeout_s
        answer = await self._command(call.vm_id, "guest-exec", exec_arguments(call))
        pid = answer.get("pid") if isinstance(answer, dict) else None
        if not isinstance(pid, int):
            raise GuestAgentError("guest-exec answered no pid")
        pause = EXEC_POLL_FIRST_S
        while True:
            status = await self._command(call.vm_id, "guest-exec-status", {"pid": pid})
            if status.get("exited"):
                result = exec_result(status, duration_s=time.monotonic() - started)
                log.info("guest exec", vm_id=call.vm_id, program=call.command[0],
                         exit_code=result.exit_code, duration_s=result.duration_s)
                return result
            if time.monotonic() >= deadline:
                raise GuestExecTimeout(
                    f"{call.command[0]} did not end within {call.timeout_s} s (pid {pid} in "
                    "the guest may still run)", pid=pid, timeout_s=call.timeout_s)
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, EXEC_POLL_MAX_S)

    # -- files -------------------------------------------------------------------------------
    async def open(self, call: FileOpenCall) -> FileOpened:
        handle = await self._on_agent(call.vm_id, "guest-file-open", lambda dom: agent_command(
            dom, "guest-file-open", {"path": call.path, "mode": call.mode + "b"},
            timeout_s=SLOW_COMMAND_TIMEOUT_S))
        if not isinstance(handle, int):
            raise GuestAgentError("guest-file-open answered no handle")
        return FileOpened(handle=handle)

    async def read(self, call: FileReadCall) -> FileChunk:
        answer = await self._command(call.vm_id, "guest-file-read",
                                     {"handle": call.handle, "count": call.count}, slow=True)
        return FileChunk(data_b64=answer.get("buf-b64", ""), eof=bool(answer.get("eof")))

    async def write(self, call: FileWriteCall) -> FileWrote:
        answer = await self._command(call.vm_id, "guest-file-write",
                                     {"handle": call.handle, "buf-b64": call.data_b64}, slow=True)
        return FileWrote(count=int(answer.get("count", 0)))

    async def close(self, call: FileCloseCall) -> Done:
        await self._command(call.vm_id, "guest-file-close", {"handle": call.handle}, slow=True)
        for program, value in (("chmod", call.mode), ("chown", call.owner)):
            if value and call.path:
                result = await self.run(GuestExecCall(vm_id=call.vm_id, timeout_s=30,
                                                      command=(program, value, call.path)))
                if result.exit_code != 0:
                    raise GuestAgentError(f"{program} {value} failed in the guest: "
                                          f"{result.result().stderr.strip()[:300]}")
        return Done()

    # -- password ----------------------------------------------------------------------------
    async def set_password(self, call: GuestPasswordCall) -> Done:
        # The agent's own command (what libvirt's setUserPassword sends), with our timeout.
        await self._command(call.vm_id, "guest-set-user-password", {
            "username": call.user, "password": _b64(call.password.encode()), "crypted": False,
        }, slow=True)
        log.info("guest password set", vm_id=call.vm_id, user=call.user)  # never the password
        return Done()

    # -- serving -----------------------------------------------------------------------------
    def _handlers(self) -> dict[str, Callable[[Msg], Awaitable[Any]]]:
        return {
            GUEST_EXEC: lambda m: self.run(_decode(m.data, GuestExecCall)),
            GUEST_FILE_OPEN: lambda m: self.open(_decode(m.data, FileOpenCall)),
            GUEST_FILE_READ: lambda m: self.read(_decode(m.data, FileReadCall)),
            GUEST_FILE_WRITE: lambda m: self.write(_decode(m.data, FileWriteCall)),
            GUEST_FILE_CLOSE: lambda m: self.close(_decode(m.data, FileCloseCall)),
            GUEST_PASSWORD: lambda m: self.set_password(_decode(m.data, GuestPasswordCall)),
        }

    @contextlib.asynccontextmanager
    async def serving(self, nc: Client) -> AsyncIterator[None]:
        """Answer the operations while inside the context (each request in its own task: a
        command waiting in one guest must not hold up another VM's)."""
        subs: list[Subscription] = []
        try:
            for op, handler in self._handlers().items():
                subs.append(await rpc.serve(nc, subjects.node_rpc(self._node_id, op), handler,
                                            what="guest agent operation", concurrent=True))
            yield
        finally:
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
