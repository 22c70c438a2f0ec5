"""Clones: a VM whose disk is copied from another VM's, then created like any VM.

The gateway writes the clone's record (new id, instance-id, MAC, hostname; ``clone_of`` names
the source, placed on the source's node) and sends ``vm.create``; before the create goes on,
:func:`prepare_clone_disk` makes the clone's ``disk.qcow2`` from the source:

- at a snapshot of the source (``qemu-img convert -l snapshot.name=<id>``; a snapshot's
  clusters never change, so a running source is read safely with ``-U``), or its current disk:
  a running source through a temporary internal snapshot QEMU takes and deletes (file systems
  frozen by the guest agent when one answers), a stopped one directly;
- linked: a qcow2 overlay (``qemu-img create -b``: milliseconds, whatever the disk's size)
  over a base that never changes: a template's ``disk.qcow2`` (no snapshot), or the frozen
  base of the snapshot (``bases.py``: written once per snapshot, then shared by every linked
  clone made at it; a snapshot the gateway listed for this clone and not taken yet is taken
  here first); full: a flattened copy, no backing file.

The disk appears under its name only when complete, so a redelivered create after a crash
finds it and goes on; the temporary snapshot is named by the clone's id (made once).
The guest's new instance-id makes cloud-init run as a new instance: new hostname, new SSH host
keys (cloud-init's ``ssh_deletekeys``), the clone's own MAC address in the domain.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import libvirt
import structlog

from limiquantix.common.commands import CreateSnapshot, CreateVm
from limiquantix.common.events import VmCloned
from limiquantix.common.process import ToolFailed, run_tool
from limiquantix.common.vms import SnapshotState, VmRecord, VmState
from limiquantix.node_agent.bases import add_user, frozen_base
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.errors import NodeAgentError
from limiquantix.node_agent.snapshots import (
    _qemu_snapshot_names,
    _qmp,
    create_snapshot,
    entry,
    main_disk,
    quiesced,
)
from limiquantix.node_agent.vm_files import restrict_file, temp_path

log = structlog.get_logger()

CONVERT_TIMEOUT_S = 3600.0


class CloneSourceUnavailable(NodeAgentError):
    """The VM (or snapshot) to copy from is gone, on another node, or not usable."""

    code = "clone_source_unavailable"
    status = 409
    default_hint = "Clone from a VM (and a ready snapshot of it) that still exists."


class DiskCopyFailed(NodeAgentError):
    """qemu-img could not copy the source disk."""

    code = "disk_copy_failed"
    default_hint = "See the message; the node's disk may be full."


async def _write_through_temp(dest: Path, args: list[str], timeout_s: float) -> int:
    """Run qemu-img writing ``dest``'s temporary name (the last argument's place), then give
    it its name: a crash leaves no half disk under the real name. Its size in bytes."""
    tmp = temp_path(dest)
    try:
        await run_tool([*args, str(tmp)], timeout_s=timeout_s)
    except ToolFailed as exc:
        await asyncio.to_thread(tmp.unlink, missing_ok=True)
        raise DiskCopyFailed(f"making the disk failed: {exc.message}") from None

    def place() -> int:
        restrict_file(tmp)
        tmp.replace(dest)
        return dest.stat().st_size
    return await asyncio.to_thread(place)


async def link_disk(base: Path, dest: Path) -> int:
    """``dest``: an empty qcow2 overlay over ``base`` (the template's disk; the same virtual
    size), its file size in bytes. The backing path is absolute: QEMU opens it from anywhere."""
    absolute = await asyncio.to_thread(base.absolute)
    return await _write_through_temp(dest, [
        "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(absolute)],
        timeout_s=60.0)


def _temp_snapshot(dom: libvirt.virDomain, name: str, *, delete: bool) -> bool:
    """Take (or delete) a QEMU internal snapshot of the running disk, no libvirt metadata;
    False when the domain does not run (nothing done)."""
    if not dom.isActive():
        return False
    _, node = main_disk(dom.XMLDesc(0))
    if node is None:
        return False
    present = name in _qemu_snapshot_names(dom, node)
    if delete and present:
        _qmp(dom, {"execute": "blockdev-snapshot-delete-internal-sync",
                   "arguments": {"device": node, "name": name}})
    elif not delete and not present:
        _qmp(dom, {"execute": "blockdev-snapshot-internal-sync",
                   "arguments": {"device": node, "name": name}})
    return True


@contextlib.asynccontextmanager
async def readable_state(ctx: AgentContext, source: VmRecord, snapshot_id: str,
                         temp_name: str) -> AsyncIterator[str | None]:
    """The internal snapshot name to read ``source``'s disk at (None: its active layer, the
    VM being off); a temporary one for a running source without a chosen snapshot."""
    if snapshot_id:
        snap = entry(source, snapshot_id)
        if snap is None or snap.state != SnapshotState.READY:
            raise CloneSourceUnavailable(f"VM {source.name} has no ready snapshot {snapshot_id}")
        yield snapshot_id
        return
    dom_uuid = ctx.domain_uuid(source.id)
    took = False
    if not ctx.host.is_test_driver:
        info = await ctx.host.info(dom_uuid)
        async with quiesced(ctx, dom_uuid, wanted=info is not None and info.active):
            took = bool(await ctx.host.with_domain(
                "temporary snapshot", dom_uuid,
                lambda dom: _temp_snapshot(dom, temp_name, delete=False)))
    try:
        yield temp_name if took else None
    finally:
        if took:
            try:
                await ctx.host.with_domain(
                    "temporary snapshot delete", dom_uuid,
                    lambda dom: _temp_snapshot(dom, temp_name, delete=True))
            except NodeAgentError as exc:
                log.warning("temporary snapshot left in the disk", vm_id=source.id,
                            snapshot=temp_name, error=exc.message)


async def copy_disk(source_disk: Path, dest: Path, *, snapshot: str | None,
                    compress: bool = False) -> int:
    """Write ``dest`` (through its temporary name): the source disk at ``snapshot``,
    flattened (no backing file). Its size in bytes."""
    args = ["qemu-img", "convert", "-U", "-O", "qcow2"]
    if compress:
        args.append("-c")
    if snapshot:
        args += ["-l", f"snapshot.name={snapshot}"]
    return await _write_through_temp(dest, [*args, str(source_disk)],
                                     timeout_s=CONVERT_TIMEOUT_S)


async def prepare_clone_disk(ctx: AgentContext, command: CreateVm) -> None:
    """Before the create of a clone: make its disk from the source (once)."""
    record = await ctx.recorder.find(command.vm_id)
    if record is None or record.clone_of is None or record.state not in (
            VmState.PENDING, VmState.CREATING):
        return
    files = ctx.files(record.id)
    if await asyncio.to_thread(files.disk.exists):
        return  # made before a crash: the create goes on
    clone_of = record.clone_of
    source = await ctx.store.find(clone_of.vm_id)
    if source is None or source.node != ctx.node_id:
        raise CloneSourceUnavailable(f"the source VM {clone_of.vm_id} is not on node "
                                     f"{ctx.node_id}")
    if record.state == VmState.PENDING:
        await ctx.recorder.transition(record.id, VmState.CREATING, reason="cloning",
                                      only_from=frozenset({VmState.PENDING}))
    await asyncio.to_thread(files.make_dirs)
    started = time.monotonic()
    async with ctx.activity.lock(source.id):  # no start/stop/snapshot of the source meanwhile
        source = await ctx.store.find(source.id) or source
        base_bytes: int | None = None
        if clone_of.linked and clone_of.snapshot_id:
            source = await _snapshot_ready(ctx, source, clone_of.snapshot_id)
            base, base_bytes = await frozen_base(ctx, source.id, clone_of.snapshot_id)
            await asyncio.to_thread(add_user, base, record.id)  # before the overlay exists
            await ctx.failpoints.hit("clone_base_made")
            size = await link_disk(base, files.disk)
        elif clone_of.linked:
            if not source.template:  # the gateway checked; a base that changes corrupts it
                raise CloneSourceUnavailable(f"VM {source.name} is not a template: a linked "
                                             "clone of it is made at a snapshot")
            size = await link_disk(ctx.files(source.id).disk, files.disk)
        else:
            async with readable_state(ctx, source, clone_of.snapshot_id,
                                      f"lq-clone-{record.id}") as snapshot:
                size = await copy_disk(ctx.files(source.id).disk, files.disk,
                                       snapshot=snapshot)
    seconds = round(time.monotonic() - started, 3)
    log.info("clone disk made", vm_id=record.id, source=source.id, linked=clone_of.linked,
             seconds=seconds, bytes=size, base_bytes=base_bytes)
    await ctx.failpoints.hit("clone_disk_made")
    await ctx.recorder.publish(VmCloned(
        vm_id=record.id, name=record.name, node=ctx.node_id, source_vm_id=source.id,
        snapshot_id=clone_of.snapshot_id, linked=clone_of.linked, seconds=seconds,
        disk_bytes=size, base_made=base_bytes is not None, base_bytes=base_bytes or 0))


async def _snapshot_ready(ctx: AgentContext, source: VmRecord, snapshot_id: str) -> VmRecord:
    """The source's record once the snapshot is ``ready``: a linked clone of a VM without a
    chosen snapshot comes with one the gateway listed (``creating``) and also queued; whichever
    of the two commands runs first takes it (both hold the source's lock; the other finds it
    ready). CloneSourceUnavailable when it is missing or failed."""
    snap = entry(source, snapshot_id)
    if snap is not None and snap.state == SnapshotState.CREATING:
        await create_snapshot(ctx, CreateSnapshot(command_id=f"clone-{snapshot_id}",
                                                  vm_id=source.id, snapshot_id=snapshot_id))
        source = await ctx.store.find(source.id) or source
        snap = entry(source, snapshot_id)
    if snap is None or snap.state != SnapshotState.READY:
        why = "is missing" if snap is None else f"is {snap.state}: {snap.error or 'not ready'}"
        raise CloneSourceUnavailable(f"snapshot {snapshot_id} of VM {source.name} {why}")
    return source

