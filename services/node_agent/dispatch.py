"""One command → one small handler, chosen with ``match``; failures become VM state + event.

A failed command is recorded (``error`` with code, message and hint, or the domain's real state
when that is known) and announced with ``vm.action_failed``; the caller then acks it, so a bad
command is never redelivered forever.
"""

from __future__ import annotations

import asyncio

import msgspec
import structlog

from limiquantix.common.commands import (
    AttachDisk,
    Command,
    CreateSnapshot,
    CreateVm,
    DeleteSnapshot,
    DeleteVm,
    DetachDisk,
    EjectMedia,
    InsertMedia,
    PauseVm,
    PublishVm,
    RebootVm,
    ResizeVm,
    ResumeVm,
    RevertSnapshot,
    StartVm,
    StopVm,
    UpdateCloudInit,
)
from limiquantix.common.errors import LimiquantixError
from limiquantix.common.events import VmActionFailed
from limiquantix.common.vms import VmError, VmState
from limiquantix.node_agent.clone import prepare_clone_disk
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.create import create_vm
from limiquantix.node_agent.device_commands import run_device_command
from limiquantix.node_agent.power import pause_vm, reboot_vm, resume_vm, start_vm, stop_vm
from limiquantix.node_agent.publish import publish_vm
from limiquantix.node_agent.reconcile_state import observed_state
from limiquantix.node_agent.removal import delete_vm
from limiquantix.node_agent.reseed import update_cloud_init
from limiquantix.node_agent.snapshots import create_snapshot, delete_snapshot, revert_snapshot

log = structlog.get_logger()


def action_of(command: Command) -> str:
    """The command's tag (``vm.create``, ...), the ``action`` of a failure event."""
    return str(type(command).__struct_config__.tag)


async def _run(ctx: AgentContext, command: Command) -> None:
    match command:
        case CreateVm():
            await prepare_clone_disk(ctx, command)  # a clone's disk first (clone.py)
            await create_vm(ctx, command)
        case StartVm():
            await start_vm(ctx, command)
        case StopVm():
            await stop_vm(ctx, command)
        case RebootVm():
            await reboot_vm(ctx, command)
        case PauseVm():
            await pause_vm(ctx, command)
        case ResumeVm():
            await resume_vm(ctx, command)
        case DeleteVm():
            await delete_vm(ctx, command)
        case UpdateCloudInit():
            await update_cloud_init(ctx, command)
        case ResizeVm() | AttachDisk() | DetachDisk() | InsertMedia() | EjectMedia():
            await run_device_command(ctx, command)
        case CreateSnapshot():
            await create_snapshot(ctx, command)
        case RevertSnapshot():
            await revert_snapshot(ctx, command)
        case DeleteSnapshot():
            await delete_snapshot(ctx, command)
        case PublishVm():
            await publish_vm(ctx, command)


async def handle(ctx: AgentContext, command: Command) -> None:
    """Carry out ``command`` under the VM's lock; never raises for a failed command."""
    bound = log.bind(vm_id=command.vm_id, command_id=command.command_id,
                     action=action_of(command))
    async with ctx.activity.lock(command.vm_id):
        try:
            await _run(ctx, command)
        except LimiquantixError as exc:
            bound.warning("command failed", code=exc.code, error=exc.message)
            await record_failure(ctx, command.vm_id, action_of(command),
                                 VmError(code=exc.code, message=exc.message, hint=exc.hint),
                                 real_state=not isinstance(command, CreateVm))
        except Exception as exc:
            bound.exception("command failed unexpectedly")
            error = VmError(code="internal", message=f"unexpected {type(exc).__name__} on node "
                            f"{ctx.node_id}", hint="See the node agent's log; retry the action.")
            await record_failure(ctx, command.vm_id, action_of(command), error,
                                 real_state=not isinstance(command, CreateVm))


async def release_failed_create(ctx: AgentContext, vm_id: str) -> bool:
    """After a failed create: when no domain was defined, remove what the create left (disk,
    seed) so the VM holds nothing on this node; True when so. A defined domain is kept (it is
    the user's to start or delete)."""
    try:
        if await ctx.host.info(ctx.domain_uuid(vm_id)) is not None:
            return False
        files = ctx.files(vm_id)
    except LimiquantixError:
        return False
    await asyncio.to_thread(files.remove)
    return True


async def record_failure(ctx: AgentContext, vm_id: str, action: str, error: VmError, *,
                         real_state: bool) -> None:
    """Leave the VM in its real state (when known) or ``error``, and publish the failure."""
    record = await ctx.store.find(vm_id)
    if record is None:
        log.warning("failed command for a VM that does not exist", vm_id=vm_id, action=action)
        return
    # While libvirt is away every look-up would wait out the reconnect deadline, and what the
    # node holds for the VM cannot be seen: the state stays unknown ('error') and nothing is
    # released.
    connected = ctx.host.connected
    state: VmState | None = None
    if real_state and connected:
        try:
            state = observed_state(await ctx.host.info(ctx.domain_uuid(vm_id)), record)
        except LimiquantixError:
            state = None
    released = (not real_state and connected and record.node == ctx.node_id
                and await release_failed_create(ctx, vm_id))
    updated = await ctx.recorder.transition(
        vm_id, state or VmState.ERROR, reason=f"{action} failed", error=error,
        change=lambda r: msgspec.structs.replace(
            r, image_progress=None, holds_resources=r.holds_resources and not released))
    await ctx.recorder.publish(VmActionFailed(
        vm_id=vm_id, name=(updated or record).name, node=ctx.node_id, action=action,
        error=error))
