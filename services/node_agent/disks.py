"""``vm.disk_attach`` / ``vm.disk_detach``: extra qcow2 disks, keyed by the disk's id.

Attach: the file ``disk-<id>.qcow2`` is made once (under a temporary name, then renamed), the
definition rendered with it, the running domain given it live unless it has it already, then
the record's entry says ``attached``. Detach: the definition loses it, the running domain lets
it go, the file is deleted, the entry leaves the record. Each step looks before it acts, so a
command redelivered after a crash finishes the work and never makes a second disk.
"""

from __future__ import annotations

import asyncio

import msgspec
import structlog

from limiquantix.common.commands import AttachDisk, DetachDisk
from limiquantix.common.events import VmDiskAttached, VmDiskDetached
from limiquantix.common.vms import VmDisk, VmRecord
from limiquantix.node_agent import devices
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.domain_redefine import record_to_change, redefine
from limiquantix.node_agent.domain_xml import ExtraDiskSpec
from limiquantix.node_agent.extra_disks import disk_path, scsi_unit
from limiquantix.node_agent.overlay import create_blank

log = structlog.get_logger()


def _find(record: VmRecord, disk_id: str) -> VmDisk | None:
    return next((disk for disk in record.disks if disk.id == disk_id), None)


async def attach_disk(ctx: AgentContext, command: AttachDisk) -> None:
    record = await record_to_change(ctx, command.vm_id)
    disk = None if record is None else _find(record, command.disk_id)
    if record is None or disk is None or disk.state == "detaching":
        log.info("disk attach: nothing to do", vm_id=command.vm_id, disk_id=command.disk_id)
        return
    files = ctx.files(record.id)
    path = disk_path(files, disk.id)
    await asyncio.to_thread(files.make_dirs)
    await create_blank(path, disk.size_gib)  # once: a redelivery finds the file
    await ctx.failpoints.hit("disk_after_file")
    await redefine(ctx, record)
    dom_uuid = ctx.domain_uuid(record.id)
    live = False
    if not ctx.host.is_test_driver:
        root = await devices.live_xml(ctx.host, dom_uuid)
        if root is not None:
            if devices.disk_by_source(root, str(path)) is None:
                await devices.attach_disk(ctx.host, dom_uuid, ExtraDiskSpec(
                    path=str(path), target=disk.target, unit=scsi_unit(disk.target)))
            live = True

    def attached(current: VmRecord) -> VmRecord | None:
        if _find(current, disk.id) is None:
            return None
        return msgspec.structs.replace(current, disks=tuple(
            msgspec.structs.replace(d, state="attached", path=str(path))
            if d.id == disk.id and d.state == "attaching" else d for d in current.disks))

    updated = await ctx.recorder.patch(record.id, attached) or record
    done = _find(updated, disk.id) or disk
    await ctx.recorder.publish(VmDiskAttached(vm_id=record.id, name=record.name,
                                              node=ctx.node_id, disk=done, live=live))
    log.info("disk attached", vm_id=record.id, disk_id=disk.id, target=disk.target, live=live)


async def detach_disk(ctx: AgentContext, command: DetachDisk) -> None:
    record = await record_to_change(ctx, command.vm_id)
    if record is None:
        return
    disk = _find(record, command.disk_id)
    files = ctx.files(record.id)
    path = disk_path(files, command.disk_id)
    if disk is None and not await asyncio.to_thread(path.exists):
        log.info("disk detach: already gone", vm_id=record.id, disk_id=command.disk_id)
        return
    # The definition first (it lists only disks not being detached), then the live domain.
    await redefine(ctx, record)
    if not ctx.host.is_test_driver:
        await devices.detach_disk(ctx.host, ctx.domain_uuid(record.id), str(path))
    await ctx.failpoints.hit("disk_before_unlink")
    await asyncio.to_thread(path.unlink, True)

    def dropped(current: VmRecord) -> VmRecord | None:
        if _find(current, command.disk_id) is None:
            return None
        return msgspec.structs.replace(
            current, disks=tuple(d for d in current.disks if d.id != command.disk_id))

    await ctx.recorder.patch(record.id, dropped)
    await ctx.recorder.publish(VmDiskDetached(
        vm_id=record.id, name=record.name, node=ctx.node_id, disk_id=command.disk_id,
        disk_name=disk.name if disk is not None else ""))
    log.info("disk detached", vm_id=record.id, disk_id=command.disk_id)
