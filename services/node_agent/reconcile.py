"""Keeps records true for changes nobody asked for: at start, every interval and on libvirt events.

For each VM of this node that no command is working on:
- record up but the domain is shut off → ``stopped`` (``error`` when it crashed);
- domain running/paused but the record says otherwise → the record follows the domain;
- domain missing but the VM's files exist → redefined from them (the test driver forgets its
  domains when the agent restarts), and started again when the record says it was running;
- domain missing and files gone → ``error`` (``vm_files_missing``; a VM already in error keeps
  its first cause and gets this as a note), and the VM no longer holds capacity.
Domains named ``lq-*`` without a record are only logged: we never destroy what we do not know.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import msgspec
import structlog

from limiquantix.common.errors import LimiquantixError
from limiquantix.common.model import utcnow
from limiquantix.common.vms import VmError, VmRecord, VmState, is_up
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.domain_boot import boot, ensure_defined, vnc_endpoint
from limiquantix.node_agent.errors import DomainCrashed, VmFilesMissing
from limiquantix.node_agent.guest_watch import BootMark
from limiquantix.node_agent.libvirt_host import DomainInfo
from limiquantix.node_agent.reconcile_state import crashed, observed_state
from limiquantix.node_agent.record_view import NodeRecords

log = structlog.get_logger()

# Commands own these states: the command (queued or redelivered) records what happens next.
COMMAND_OWNED = frozenset({VmState.PENDING, VmState.CREATING, VmState.DELETING})
RESTART_AFTER_LOSS = frozenset({VmState.RUNNING, VmState.READY, VmState.STARTING,
                                VmState.REBOOTING})


async def sync_vm(ctx: AgentContext, vm_id: str, *, from_event: bool) -> None:
    """Make one VM's record agree with its domain, unless a command is working on it."""
    if ctx.activity.is_busy(vm_id):
        return
    async with ctx.activity.lock(vm_id):
        record = await ctx.store.find(vm_id)
        if record is None or record.node != ctx.node_id or record.state in COMMAND_OWNED:
            return
        info = await ctx.host.info(ctx.domain_uuid(vm_id))
        if info is None:
            await _recover(ctx, record)
            return
        # The API records a transitional state just before the command arrives: a periodic
        # look must not undo it in that window (an event is fresher evidence, so it may).
        age = utcnow() - record.updated_at
        if not from_event and age < timedelta(seconds=ctx.settings.command_ack_wait_s):
            return
        await _follow_domain(ctx, record, info)


async def _follow_domain(ctx: AgentContext, record: VmRecord, info: DomainInfo) -> None:
    state = observed_state(info, record)
    if state is None or state == record.state:
        return
    if record.state == VmState.ERROR and state == VmState.STOPPED:
        return  # keep the error visible; a start (legal from error) clears it
    error: VmError | None = None
    if state == VmState.ERROR and crashed(info):
        exc = DomainCrashed(f"VM {record.name} crashed")
        error = VmError(code=exc.code, message=exc.message, hint=exc.hint)
    elif state == VmState.ERROR:
        return
    if state in (VmState.STOPPED, VmState.ERROR):
        ctx.guests.cancel(record.id)
    vnc = await vnc_endpoint(ctx, record.id) if is_up(state) else None
    await ctx.recorder.transition(
        record.id, state, reason="domain changed outside Limiquantix", error=error,
        change=lambda r: msgspec.structs.replace(r, vnc=vnc), only_from=frozenset({record.state}))


async def _recover(ctx: AgentContext, record: VmRecord) -> None:
    try:
        await ensure_defined(ctx, record)
    except VmFilesMissing as exc:
        if not record.holds_resources:
            return  # nothing of it is left on the node, and the record says so already
        await ctx.recorder.transition(
            record.id, VmState.ERROR, reason="domain and files missing",
            error=_keep_first_error(record.error, exc),
            change=lambda r: msgspec.structs.replace(r, holds_resources=False))
        return
    if record.state in RESTART_AFTER_LOSS:
        await boot(ctx, record.id, reason="restarted after the domain was lost")
    elif record.state not in (VmState.STOPPED, VmState.ERROR):
        await ctx.recorder.transition(record.id, VmState.STOPPED, reason="domain redefined",
                                      change=lambda r: msgspec.structs.replace(r, vnc=None))


def _keep_first_error(first: VmError | None, found: LimiquantixError) -> VmError:
    """The VM's error with ``found`` added: the first cause stays what the user reads."""
    if first is None:
        return VmError(code=found.code, message=found.message, hint=found.hint)
    note = f"{found.code}: {found.message}"
    if note in first.notes:
        return first
    return msgspec.structs.replace(first, notes=(*first.notes, note))


async def reconcile_once(ctx: AgentContext, records: NodeRecords) -> None:
    """Compare every record of this node with libvirt's domains."""
    domains = {d.uuid: d for d in await ctx.host.list_domains()}
    known: set[str] = set()
    for record in records.all():
        dom_uuid = ctx.domain_uuid(record.id)
        known.add(dom_uuid)
        info = domains.get(dom_uuid)
        if _looks_consistent(record, info):  # judged on the view: no I/O for the usual case
            _resume_watch(ctx, record, info)
            continue
        try:
            await sync_vm(ctx, record.id, from_event=False)
        except LimiquantixError as exc:
            log.warning("reconcile failed", vm_id=record.id, code=exc.code, error=exc.message)
    for dom_uuid, domain in domains.items():
        if domain.name.startswith("lq-") and dom_uuid not in known:
            log.warning("domain without a VM record left alone", domain=domain.name,
                        uuid=dom_uuid)


def _looks_consistent(record: VmRecord, info: DomainInfo | None) -> bool:
    if record.state in COMMAND_OWNED:
        return True
    if info is None:
        return False
    state = observed_state(info, record)
    return state is None or state == record.state or (
        record.state == VmState.ERROR and state == VmState.STOPPED)


def _resume_watch(ctx: AgentContext, record: VmRecord, info: DomainInfo | None) -> None:
    """After an agent restart, follow guests still booting (not when readiness already failed)."""
    if (record.state == VmState.RUNNING and info is not None and info.active
            and not record.guest.cloud_init_error and not ctx.guests.watching(record.id)):
        # After an agent restart the boot's log offset is unknown: readiness finds the boot.
        ctx.guests.watch(record, ctx.files(record.id).serial_log,
                         BootMark(started_at=record.updated_at))


async def run_periodic(ctx: AgentContext, records: NodeRecords) -> None:
    """Reconcile every ``reconcile_interval_s`` until cancelled."""
    while True:
        await asyncio.sleep(ctx.settings.reconcile_interval_s)
        try:
            await reconcile_once(ctx, records)
        except Exception:
            log.exception("reconcile pass failed")


async def follow_events(ctx: AgentContext, records: NodeRecords) -> None:
    """Turn libvirt lifecycle events into syncs of the VM concerned, until cancelled."""
    while True:
        event = await ctx.host.events.get()
        vm_id = records.vm_for_domain(event.uuid) or event.uuid  # the UUID is the VM id
        try:
            await sync_vm(ctx, vm_id, from_event=True)
        except Exception:
            log.exception("event handling failed", vm_id=vm_id, event=event.event)
