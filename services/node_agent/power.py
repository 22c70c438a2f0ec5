"""Power commands: start, stop (the guest agent's shutdown when one is connected, then ACPI,
then off after the timeout, as Nova does; ``stopped_by`` on the record says which worked),
force-stop, reboot, pause and resume. The API recorded the transitional state; these record the
outcome."""

from __future__ import annotations

import asyncio
import time

import libvirt
import msgspec
import structlog

from limiquantix.common.commands import PauseVm, RebootVm, ResumeVm, StartVm, StopVm
from limiquantix.common.vms import GuestInfo, VmRecord, VmState
from limiquantix.node_agent import guest_phases
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.domain_boot import boot, ensure_defined
from limiquantix.node_agent.errors import DomainMissing, DomainNotRunning
from limiquantix.node_agent.guest_agent import channel_connected
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


async def agent_shutdown(ctx: AgentContext, dom_uuid: str) -> bool:
    """Ask the guest agent to power the guest off (guest-shutdown); False when no agent is
    connected or it refused."""
    def op(dom: libvirt.virDomain) -> bool:
        if not dom.isActive() or not channel_connected(dom.XMLDesc(0)):
            return False
        try:
            dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT)
        except libvirt.libvirtError as exc:
            log.info("guest agent shutdown refused; ACPI next", uuid=dom_uuid,
                     error=exc.get_error_message())
            return False
        return True
    if ctx.host.is_test_driver:
        return False
    return bool(await ctx.host.agent_call("agent shutdown", dom_uuid, op))


async def _shut_down(ctx: AgentContext, dom_uuid: str, timeout_s: float) -> tuple[str, str]:
    """Agent, then ACPI, then power off: (stopped_by, reason)."""
    deadline = time.monotonic() + timeout_s
    if await agent_shutdown(ctx, dom_uuid):
        share = min(timeout_s, ctx.settings.guest_agent_shutdown_s)
        if await _powered_off(ctx, dom_uuid, share):
            return "agent", "shut down by the guest agent"
    await ctx.host.shutdown(dom_uuid)
    if await _powered_off(ctx, dom_uuid, max(0.0, deadline - time.monotonic())):
        return "acpi", "shut down by the guest"
    await ctx.host.destroy(dom_uuid)
    return "power_off", "powered off after the shutdown timeout"


async def stop_vm(ctx: AgentContext, command: StopVm) -> None:
    record = await _record(ctx, command.vm_id)
    ctx.guests.cancel(record.id)
    dom_uuid = ctx.domain_uuid(record.id)
    info = await ctx.host.info(dom_uuid)
    reason, stopped_by = "already off", ""
    if info is not None and info.active:
        if command.force or info.state == libvirt.VIR_DOMAIN_PAUSED:
            await ctx.host.destroy(dom_uuid)
            reason, stopped_by = "powered off", "power_off"
        else:
            stopped_by, reason = await _shut_down(ctx, dom_uuid, stop_timeout(ctx, command))
    log.info("stopped", vm_id=record.id, stopped_by=stopped_by or "-")
    await ctx.recorder.transition(
        record.id, VmState.STOPPED, reason=reason,
        change=lambda r: msgspec.structs.replace(
            r, vnc=None, stopped_by=stopped_by,
            guest=msgspec.structs.replace(r.guest, agent=msgspec.structs.replace(
                r.guest.agent, connected=False))))


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
        change=lambda r: msgspec.structs.replace(
            r, guest=guest_phases.booted_guest(GuestInfo(), boot_mark.started_at)))
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
