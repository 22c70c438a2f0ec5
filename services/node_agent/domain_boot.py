"""Steps shared by several commands and by reconciliation: (re)define a domain, boot it."""

from __future__ import annotations

import asyncio

import msgspec
import structlog

from limiquantix.common.vms import VmRecord, VmState, VncEndpoint
from limiquantix.node_agent import guest_phases
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.errors import VmFilesMissing
from limiquantix.node_agent.guest_watch import mark_boot

log = structlog.get_logger()


async def ensure_defined(ctx: AgentContext, record: VmRecord) -> bool:
    """Make sure libvirt knows the VM's domain; True when it had to be redefined.

    The test driver forgets domains when the agent restarts, and an admin may undefine one: the
    VM's saved ``domain.xml`` and disk are enough to bring it back exactly as it was.
    """
    if await ctx.host.info(ctx.domain_uuid(record.id)) is not None:
        return False
    files = ctx.files(record.id)
    if not files.disk.exists() or not files.domain_xml.exists():
        log.warning("domain and files missing", vm_id=record.id, files=str(files.root))
        raise VmFilesMissing(f"VM {record.name} has no domain and its files are gone from node "
                             f"{ctx.node_id}", vm_id=record.id)
    xml = await asyncio.to_thread(files.domain_xml.read_text)
    await ctx.host.define(xml)
    log.info("domain redefined from its files", vm_id=record.id)
    return True


async def vnc_endpoint(ctx: AgentContext, vm_id: str) -> VncEndpoint | None:
    """Where the running domain's VNC display listens (None on drivers without one)."""
    display = await ctx.host.vnc_display(ctx.domain_uuid(vm_id))
    if display is None:
        return None
    port, protected = display
    return VncEndpoint(host=ctx.settings.console_host, port=port, password_protected=protected)


async def boot(ctx: AgentContext, vm_id: str, *, reason: str,
               only_from: frozenset[VmState] | None = None) -> VmRecord | None:
    """Start the (defined) domain, record ``running`` with its VNC display, watch the guest."""
    boot_mark = await asyncio.to_thread(mark_boot, ctx.files(vm_id).serial_log)
    await ctx.host.start(ctx.domain_uuid(vm_id))
    vnc = await vnc_endpoint(ctx, vm_id)
    serial_log = str(ctx.files(vm_id).serial_log)

    def booted(record: VmRecord) -> VmRecord:
        guest = guest_phases.booted_guest(record.guest, boot_mark.started_at)
        return msgspec.structs.replace(record, vnc=vnc, serial_log=serial_log, guest=guest,
                                       image_progress=None)

    record = await ctx.recorder.transition(vm_id, VmState.RUNNING, reason=reason, change=booted,
                                           only_from=only_from)
    if record is not None:
        for phase in ("defined", "booting"):
            await ctx.recorder.publish(guest_phases.phase_event(record, phase))
        ctx.guests.watch(record, ctx.files(vm_id).serial_log, boot_mark)
    return record
