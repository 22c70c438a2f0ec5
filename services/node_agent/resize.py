"""``vm.resize``: make the VM's domain match the record's vcpus, memory_mib and disk_gib.

The gateway checked the request and wrote the new figures (docs/day2.md). Here: a stopped VM's
disk file grows (``qemu-img resize``) and its definition is rendered again, applied at its next
start; a running VM is also changed live, only where it differs: vCPUs hot-plugged
(``setVcpusFlags``), memory as one more DIMM, the disk grown with ``blockResize``. The guest's
root partition and file system follow at once when its agent answers (cloud-init's own growpart
and resizefs, run through ``guest-exec``), else at its next boot (cloud-init runs them at every
boot). Reading the live domain before each change makes a redelivered command after a crash
change nothing twice.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from limiquantix.common import qemu_img
from limiquantix.common.commands import ResizeVm
from limiquantix.common.errors import LimiquantixError
from limiquantix.common.events import VmResized
from limiquantix.common.guest_rpc import GuestExecCall
from limiquantix.common.process import run_tool
from limiquantix.common.vms import VmRecord, VmState
from limiquantix.node_agent import devices
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.domain_redefine import redefine
from limiquantix.node_agent.errors import WrongNode
from limiquantix.node_agent.guest_ops import GuestOps
from limiquantix.node_agent.overlay import GIB, QEMU_IMG_TIMEOUT_S

log = structlog.get_logger()

KIB = 1024
# What cloud-init runs at every boot, run now: the partition first, then the file system on it.
GUEST_GROW_COMMANDS = tuple(
    ("/usr/bin/cloud-init", "single", "--name", module, "--frequency", "always")
    for module in ("growpart", "resizefs"))
GUEST_GROW_TIMEOUT_S = 120


async def grow_disk_file(path: Path, disk_gib: int) -> bool:
    """Grow a stopped VM's disk file to ``disk_gib`` (never shrink it); True when it grew."""
    if not await asyncio.to_thread(path.exists):
        return False
    current = (await qemu_img.info(path, fmt="qcow2")).virtual_size
    if current >= disk_gib * GIB:
        return False
    await run_tool(["qemu-img", "resize", "-q", "-f", "qcow2", str(path), str(disk_gib * GIB)],
                   timeout_s=QEMU_IMG_TIMEOUT_S)
    log.info("disk grown", disk=str(path), disk_gib=disk_gib)
    return True


async def resize_vm(ctx: AgentContext, command: ResizeVm) -> None:
    record = await ctx.recorder.find(command.vm_id)
    if record is None or record.state == VmState.DELETING:
        return
    if record.node and record.node != ctx.node_id:
        raise WrongNode(f"VM {record.name} is placed on node {record.node}", node=record.node)
    files = ctx.files(record.id)
    dom_uuid = ctx.domain_uuid(record.id)
    info = await ctx.host.info(dom_uuid)
    running = info is not None and info.active
    if not running:
        await grow_disk_file(files.disk, record.disk_gib)
    await ctx.failpoints.hit("resize_before_define")
    await redefine(ctx, record)
    live, grown = False, False
    if running and not ctx.host.is_test_driver:
        live, disk_grew = await _apply_live(ctx, dom_uuid, record)
        grown = disk_grew and await grow_in_guest(ctx, record.id)
    await ctx.recorder.publish(VmResized(
        vm_id=record.id, name=record.name, node=ctx.node_id, vcpus=record.vcpus,
        memory_mib=record.memory_mib, disk_gib=record.disk_gib, live=live, guest_grown=grown))
    log.info("vm resized", vm_id=record.id, vcpus=record.vcpus, memory_mib=record.memory_mib,
             disk_gib=record.disk_gib, live=live, guest_grown=grown)


async def grow_in_guest(ctx: AgentContext, vm_id: str) -> bool:
    """Grow the guest's root partition and file system now through its agent; False when
    there is no agent or a step fails (best effort: the next boot grows them anyway)."""
    ops = GuestOps(ctx.host, ctx.store, node_id=ctx.node_id)
    for command in GUEST_GROW_COMMANDS:
        try:
            reply = await ops.run(GuestExecCall(vm_id=vm_id, command=command,
                                                timeout_s=GUEST_GROW_TIMEOUT_S))
        except LimiquantixError as exc:
            log.info("root file system grows at the next boot", vm_id=vm_id, reason=exc.message)
            return False
        if reply.exit_code != 0:
            log.warning("growing the root file system in the guest failed", vm_id=vm_id,
                        step=command[3], exit_code=reply.exit_code)
            return False
    return True


async def _apply_live(ctx: AgentContext, dom_uuid: str, record: VmRecord
                      ) -> tuple[bool, bool]:
    """Hot-plug what the running domain lacks: (it took it all, its disk grew). Not all: the
    definition brings the rest at the next start."""
    root = await devices.live_xml(ctx.host, dom_uuid)
    if root is None:
        return False, False
    complete, disk_grew = True, False
    current, maximum = devices.live_vcpus(root)
    if current < record.vcpus <= maximum:
        await devices.set_vcpus(ctx.host, dom_uuid, record.vcpus)
    elif record.vcpus != current:
        complete = False
    memory_kib, ceiling_kib = devices.live_memory_kib(root)
    wanted_kib = record.memory_mib * KIB
    if memory_kib < wanted_kib <= ceiling_kib:
        await devices.plug_memory(ctx.host, dom_uuid, wanted_kib - memory_kib)
    elif wanted_kib != memory_kib:
        complete = False
    system = devices.disk_by_source(root, str(ctx.files(record.id).disk))
    target = system.find("target") if system is not None else None
    if target is not None:
        dev = target.get("dev", "vda")
        if await devices.block_size(ctx.host, dom_uuid, dev) < record.disk_gib * GIB:
            await devices.block_resize(ctx.host, dom_uuid, dev, record.disk_gib * GIB)
            disk_grew = True
    if not complete:
        log.warning("running domain could not take the new size; it applies at the next start",
                    vm_id=record.id, vcpus=record.vcpus, memory_mib=record.memory_mib)
    return complete, disk_grew
