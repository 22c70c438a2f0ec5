"""Power commands: start, stop (ACPI, then off after the timeout, as Nova does), force-stop,
reboot, pause and resume. The API recorded the transitional state; these record the outcome."""

from __future__ import annotations

import asyncio
import time

import libvirt
import msgspec
import structlog

from limiquantix.common.commands import PauseVm, RebootVm, ResumeVm, StartVm, StopVm
from limiquantix.common.vms import GuestInfo, VmRecord, VmState
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.domain_boot import boot, ensure_defined
from limiquantix.node_agent.errors import DomainMissing, DomainNotRunning
from limiquantix.node_agent.guest_watch import mark_boot

log = structlog.get_logger()

STOP_POLL_S = 0.25


async def _record(ctx: AgentContext, vm_id: str) -> VmRecord:
    record, _ = await ctx.store.get(vm_id)  # NotFound when deleted meanwhile
    return record


async def start_vm(ctx: AgentContext, command: StartVm) -> None:
    record = await _record(ctx, command.vm_id)
    await ensure_defined(ctx, record)
    await boot(ctx, record.id, reason="started")


def stop_timeout(ctx: AgentContext, command: StopVm) -> float:
    """The shorter of the command's and the node's grace (either side may shorten it)."""
    return min(command.timeout_s, ctx.settings.stop_timeout_s)


async def _powered_off(ctx: AgentContext, dom_uuid: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        info = await ctx.host.info(dom_uuid)
        if info is None or not info.active:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(STOP_POLL_S)


async def stop_vm(ctx: AgentContext, command: StopVm) -> None:
    record = await _record(ctx, command.vm_id)
    ctx.guests.cancel(record.id)
    dom_uuid = ctx.domain_uuid(record.id)
    info = await ctx.host.info(dom_uuid)
    reason = "already off"
    if info is not None and info.active:
        if command.force or info.state == libvirt.VIR_DOMAIN_PAUSED:
            await ctx.host.destroy(dom_uuid)
            reason = "powered off"
        else:
            await ctx.host.shutdown(dom_uuid)
            if await _powered_off(ctx, dom_uuid, stop_timeout(ctx, command)):
                reason = "shut down by the guest"
            else:
                await ctx.host.destroy(dom_uuid)
                reason = "powered off after the shutdown timeout"
    await ctx.recorder.transition(
        record.id, VmState.STOPPED, reason=reason,
        change=lambda r: msgspec.structs.replace(r, vnc=None))


async def _require_running(ctx: AgentContext, vm_id: str) -> str:
    dom_uuid = ctx.domain_uuid(vm_id)
    info = await ctx.host.info(dom_uuid)
    if info is None:
        raise DomainMissing(f"VM {vm_id} has no domain on this node", vm_id=vm_id)
    if not info.active:
        raise DomainNotRunning(f"VM {vm_id} is not running", vm_id=vm_id)
    return dom_uuid


async def reboot_vm(ctx: AgentContext, command: RebootVm) -> None:
    record = await _record(ctx, command.vm_id)
    dom_uuid = await _require_running(ctx, record.id)
    boot_mark = await asyncio.to_thread(mark_boot, ctx.files(record.id).serial_log)
    await ctx.host.reboot(dom_uuid)
    updated = await ctx.recorder.transition(
        record.id, VmState.RUNNING, reason="rebooted",
        change=lambda r: msgspec.structs.replace(r, guest=GuestInfo()))
    if updated is not None:
        ctx.guests.watch(updated, ctx.files(record.id).serial_log, boot_mark)


async def pause_vm(ctx: AgentContext, command: PauseVm) -> None:
    record = await _record(ctx, command.vm_id)
    await ctx.host.suspend(await _require_running(ctx, record.id))
    await ctx.recorder.transition(record.id, VmState.PAUSED, reason="paused")


async def resume_vm(ctx: AgentContext, command: ResumeVm) -> None:
    record = await _record(ctx, command.vm_id)
    await ctx.host.resume(await _require_running(ctx, record.id))
    # The guest kept its state while paused: it is as ready as it was.
    state = VmState.READY if record.guest.ready_at is not None else VmState.RUNNING
    await ctx.recorder.transition(record.id, state, reason="resumed")
