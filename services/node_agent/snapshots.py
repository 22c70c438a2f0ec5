"""Snapshots: internal qcow2 snapshots of the VM's disk, through libvirt (docs/day2.md).

Why internal: Debian 12's libvirt 9.0 cannot revert external snapshots ("revert to external
snapshot not supported yet"), and internal ones revert, delete and carry memory with it.

- stopped VM: ``snapshotCreateXML`` (libvirt runs ``qemu-img snapshot -c``), disk only;
- running VM, ``memory``: ``snapshotCreateXML`` with the memory state (QEMU ``savevm``: the
  guest pauses while its RAM is written into the qcow2);
- running VM, disk only: libvirt 9.0 refuses it ("internal snapshot of a running VM must
  include the memory state"), so the node asks QEMU itself (``blockdev-snapshot-internal-sync``
  on the disk's format node, file systems frozen through the guest agent when one answers:
  ``quiesced: true``)
  and then gives libvirt the metadata with ``REDEFINE`` as a ``shutoff`` snapshot: reverting
  it stops the domain, libvirt runs ``qemu-img snapshot -a``, and the node boots it again.

The libvirt name of a snapshot is its id: a redelivered command finds it made (in libvirt, or
in QEMU's list of the disk's snapshots) and only records it. Every snapshot's libvirt XML is
kept in ``<vm dir>/snapshots/<id>.xml``; when libvirt lost the domain (undefined, the test
driver after a restart) :func:`restore_metadata` redefines them from there (or, missing that,
from the record and the saved domain XML).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import libvirt
import msgspec
import structlog

from limiquantix.common import qemu_img
from limiquantix.common.commands import CreateSnapshot, DeleteSnapshot, RevertSnapshot
from limiquantix.common.errors import LimiquantixError
from limiquantix.common.events import VmActionFailed, VmSnapshotChanged
from limiquantix.common.process import ToolFailed
from limiquantix.common.vms import (
    SnapshotState,
    VmError,
    VmRecord,
    VmSnapshot,
    VmState,
)
from limiquantix.node_agent.bases import SnapshotInUse, live_users, remove_base
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.domain_boot import boot, ensure_defined, vnc_endpoint
from limiquantix.node_agent.errors import LibvirtFailed, NodeAgentError
from limiquantix.node_agent.guest_ops import freeze_filesystems, thaw_filesystems
from limiquantix.node_agent.vm_files import path_inside, write_atomic

log = structlog.get_logger()

SNAPSHOT_DIR = "snapshots"


class SnapshotFailed(NodeAgentError):
    """libvirt or QEMU could not take, revert or delete the snapshot."""

    code = "snapshot_failed"
    default_hint = "See the message; the snapshot is marked error and can be deleted."


class SnapshotMissing(NodeAgentError):
    """The snapshot is on the record but neither libvirt nor the disk has it."""

    code = "snapshot_missing"
    status = 409
    default_hint = "Delete the snapshot (`lq vm snapshot delete`); its data is gone."


def snapshot_file(ctx: AgentContext, vm_id: str, snapshot_id: str) -> Path:
    """Where the libvirt XML of a snapshot is kept on the node."""
    root = ctx.files(vm_id).root / SNAPSHOT_DIR
    return path_inside(root, f"{snapshot_id}.xml")


def entry(record: VmRecord, snapshot_id: str) -> VmSnapshot | None:
    """The record's entry for ``snapshot_id``."""
    return next((s for s in record.snapshots if s.id == snapshot_id), None)


def with_entry(record: VmRecord, snapshot_id: str,
               change: Callable[[VmSnapshot], VmSnapshot | None]) -> VmRecord | None:
    """``record`` with that snapshot entry changed (None from ``change``: removed); None when
    the record has no such entry."""
    found = entry(record, snapshot_id)
    if found is None:
        return None
    new = change(found)
    items = tuple(s for s in (new if s.id == snapshot_id else s for s in record.snapshots)
                  if s is not None)
    return msgspec.structs.replace(record, snapshots=items)


# --- libvirt XML ------------------------------------------------------------------------------

def create_xml(snap: VmSnapshot, *, memory: bool) -> str:
    """What ``snapshotCreateXML`` is given (the name is the id; the user's name in the
    description, for people reading ``virsh snapshot-list``)."""
    mem = "<memory snapshot='internal'/>" if memory else "<memory snapshot='no'/>"
    return (f"<domainsnapshot><name>{snap.id}</name>"
            f"<description>{escape(snap.name)}</description>{mem}</domainsnapshot>")


def redefine_xml(snap: VmSnapshot, domain_xml: str, disk_target: str) -> str:
    """Metadata of a disk-only snapshot QEMU took (or one to restore from the record): a
    ``shutoff`` snapshot with the disk's internal snapshot, the domain's config inside."""
    return (f"<domainsnapshot><name>{snap.id}</name>"
            f"<description>{escape(snap.name)}</description><state>shutoff</state>"
            f"<creationTime>{int(snap.created_at.timestamp())}</creationTime>"
            f"<memory snapshot='no'/><disks><disk name='{disk_target}' snapshot='internal'/>"
            f"</disks>{domain_xml}</domainsnapshot>")


def main_disk(domain_xml: str) -> tuple[str, str | None]:
    """(target dev, libvirt's blockdev node name of its qcow2 layer or None) of the VM disk."""
    root = ET.fromstring(domain_xml)
    disk = root.find("./devices/disk[@device='disk']")
    if disk is None:
        raise SnapshotFailed("the domain has no disk")
    target = disk.find("target")
    source = disk.find("source")
    dev = target.get("dev", "vda") if target is not None else "vda"
    index = source.get("index") if source is not None else None
    return dev, (f"libvirt-{index}-format" if index else None)


# --- the steps --------------------------------------------------------------------------------

def _lookup(dom: libvirt.virDomain, name: str) -> libvirt.virDomainSnapshot | None:
    try:
        return dom.snapshotLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            return None
        raise


def _qmp(dom: libvirt.virDomain, command: dict[str, object]) -> Any:
    """A QMP command through libvirt (the domain is marked tainted: custom-monitor)."""
    import libvirt_qemu  # part of libvirt-python; only the real driver has a monitor

    reply = json.loads(libvirt_qemu.qemuMonitorCommand(dom, json.dumps(command), 0))
    if "error" in reply:
        raise libvirt.libvirtError(str(reply["error"].get("desc", reply["error"])))
    return reply.get("return")


def _qemu_snapshot_names(dom: libvirt.virDomain, node: str) -> set[str]:
    """Internal snapshots QEMU sees in the disk layer ``node``."""
    reply = _qmp(dom, {"execute": "query-named-block-nodes", "arguments": {"flat": True}})
    for item in reply or []:
        if item.get("node-name") == node:
            return {s["name"] for s in item.get("image", {}).get("snapshots", [])}
    return set()


def _take_live_disk_only(dom: libvirt.virDomain, snap: VmSnapshot) -> None:
    """QEMU snapshots the running disk; libvirt is given the metadata (module docstring)."""
    live = dom.XMLDesc(0)
    target, node = main_disk(live)
    if node is None:
        raise SnapshotFailed("libvirt did not name the disk's block node (no -blockdev?)")
    if snap.id not in _qemu_snapshot_names(dom, node):
        _qmp(dom, {"execute": "blockdev-snapshot-internal-sync",
                   "arguments": {"device": node, "name": snap.id}})
    config = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    dom.snapshotCreateXML(redefine_xml(snap, config, target),
                          libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)


def _take(dom: libvirt.virDomain, snap: VmSnapshot, *, test_driver: bool) -> tuple[str, bool]:
    """Take the snapshot unless it exists; (its libvirt XML, whether the VM was running)."""
    running = bool(dom.isActive())
    existing = _lookup(dom, snap.id)
    if existing is None:
        if running and not snap.memory and not test_driver:
            _take_live_disk_only(dom, snap)
        else:
            dom.snapshotCreateXML(create_xml(snap, memory=snap.memory and running), 0)
        existing = _lookup(dom, snap.id)
        if existing is None:
            raise SnapshotFailed("libvirt does not list the snapshot it made")
    return existing.getXMLDesc(libvirt.VIR_DOMAIN_SNAPSHOT_XML_SECURE), running


@contextlib.asynccontextmanager
async def quiesced(ctx: AgentContext, dom_uuid: str, *, wanted: bool) -> AsyncIterator[bool]:
    """Freeze the guest's file systems through its agent for the block (True when frozen);
    without a connected agent the snapshot is taken anyway, crash-consistent (False). The
    thaw always follows, even when the snapshot failed."""
    frozen = False
    if wanted and not ctx.host.is_test_driver:
        try:
            frozen = await freeze_filesystems(ctx.host, dom_uuid) > 0
        except LimiquantixError as exc:
            log.info("file systems not frozen; snapshot is crash-consistent", uuid=dom_uuid,
                     reason=exc.message)
    try:
        yield frozen
    finally:
        if frozen:
            try:
                await thaw_filesystems(ctx.host, dom_uuid)
            except LimiquantixError as exc:
                log.error("thawing the guest's file systems failed", uuid=dom_uuid,
                          error=exc.message)


async def _memory_size(disk: Path, snapshot_id: str) -> int | None:
    """Bytes of saved memory state qemu-img reports for the snapshot (None when unknown)."""
    try:
        info = await qemu_img.info(disk, fmt="qcow2", force_share=True)
    except ToolFailed:
        return None
    return next((s.vm_state_size for s in info.snapshots if s.name == snapshot_id), None)


async def _fail(ctx: AgentContext, vm_id: str, snapshot_id: str, action: str,
                exc: LimiquantixError, *, drop: bool = False) -> None:
    """Mark the snapshot ``error`` (or keep it, for a failed revert), and say so; the VM
    itself keeps its state (a failed snapshot is not the VM's error)."""
    def mark(s: VmSnapshot) -> VmSnapshot:
        if action == "vm.snapshot.create":
            return msgspec.structs.replace(s, state=SnapshotState.ERROR, error=exc.message)
        return msgspec.structs.replace(s, state=SnapshotState.READY, error=exc.message)

    record = await ctx.recorder.patch(vm_id, lambda r: with_entry(r, snapshot_id, mark))
    if record is None:
        return
    snap = entry(record, snapshot_id)
    error = VmError(code=exc.code, message=exc.message, hint=exc.hint)
    await ctx.recorder.publish(VmActionFailed(
        vm_id=vm_id, name=record.name, node=ctx.node_id, action=action, error=error))
    if snap is not None:
        await ctx.recorder.publish(VmSnapshotChanged(
            vm_id=vm_id, name=record.name, node=ctx.node_id, action="failed", snapshot=snap))


async def _pending(ctx: AgentContext, command: CreateSnapshot | RevertSnapshot | DeleteSnapshot,
                   state: SnapshotState | None) -> tuple[VmRecord, VmSnapshot] | None:
    """The record and its entry when the command still has work (the entry exists and, with
    ``state``, is in it); None when a redelivery finds it handled already."""
    record = await ctx.recorder.find(command.vm_id)
    snap = entry(record, command.snapshot_id) if record is not None else None
    if record is None or snap is None or (state is not None and snap.state != state):
        log.info("snapshot command already handled", vm_id=command.vm_id,
                 snapshot_id=command.snapshot_id, command=type(command).__name__)
        return None
    return record, snap


async def _domain_ready(ctx: AgentContext, record: VmRecord) -> None:
    """The domain defined and libvirt knowing every snapshot on the record."""
    await ensure_defined(ctx, record)
    await restore_metadata(ctx, record)


async def create_snapshot(ctx: AgentContext, command: CreateSnapshot) -> None:
    """``vm.snapshot.create``: take it (once), keep its XML, record it ``ready``."""
    pending = await _pending(ctx, command, SnapshotState.CREATING)
    if pending is None:
        return
    record, snap = pending
    try:
        await _domain_ready(ctx, record)
        started = time.monotonic()
        dom_uuid = ctx.domain_uuid(record.id)
        info = await ctx.host.info(dom_uuid)
        live_disk_only = info is not None and info.active and not snap.memory
        async with quiesced(ctx, dom_uuid, wanted=live_disk_only) as frozen:
            taken = await ctx.host.with_domain(
                "snapshot", dom_uuid,
                lambda dom: _take(dom, snap, test_driver=ctx.host.is_test_driver))
        if taken is None:
            raise SnapshotFailed(f"VM {record.name} has no domain on node {ctx.node_id}")
        xml, running = taken
        await ctx.failpoints.hit("snapshot_taken")
        path = snapshot_file(ctx, record.id, snap.id)
        await asyncio.to_thread(_save_xml, path, xml)
        size = (await _memory_size(ctx.files(record.id).disk, snap.id)
                if snap.memory and running and not ctx.host.is_test_driver else None)
    except LimiquantixError as exc:
        log.warning("snapshot failed", vm_id=record.id, snapshot_id=snap.id, error=exc.message)
        await _fail(ctx, record.id, snap.id, "vm.snapshot.create", exc)
        return
    done = msgspec.structs.replace(
        snap, state=SnapshotState.READY, memory=snap.memory and running, quiesced=frozen,
        vm_state="running" if running else "stopped", size_bytes=size, error="")
    updated = await ctx.recorder.patch(record.id, lambda r: with_entry(r, snap.id,
                                                                        lambda _: done))
    log.info("snapshot created", vm_id=record.id, snapshot_id=snap.id, memory=done.memory,
             seconds=round(time.monotonic() - started, 3))
    await ctx.recorder.publish(VmSnapshotChanged(
        vm_id=record.id, name=(updated or record).name, node=ctx.node_id, action="created",
        snapshot=done))


def _save_xml(path: Path, xml: str) -> None:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    write_atomic(path, xml.encode())


def _revert(dom: libvirt.virDomain, snapshot_id: str, flags: int) -> None:
    snap = _lookup(dom, snapshot_id)
    if snap is None:
        raise SnapshotMissing(f"libvirt has no snapshot {snapshot_id}")
    dom.revertToSnapshot(snap, flags)


async def revert_snapshot(ctx: AgentContext, command: RevertSnapshot) -> None:
    """``vm.snapshot.revert``: a memory snapshot resumes the guest where it was; a disk-only
    one restores the disk and boots the VM again when it was running (stays off otherwise)."""
    pending = await _pending(ctx, command, SnapshotState.REVERTING)
    if pending is None:
        return
    record, snap = pending
    dom_uuid = ctx.domain_uuid(record.id)
    try:
        await _domain_ready(ctx, record)
        info = await ctx.host.info(dom_uuid)
        was_running = info is not None and info.active
        ctx.guests.cancel(record.id)
        if snap.memory:
            await ctx.host.with_domain("revert", dom_uuid,
                                         lambda dom: _revert(dom, snap.id, 0))
        else:
            await ctx.host.destroy(dom_uuid)
            await ctx.host.with_domain("revert", dom_uuid,
                                         lambda dom: _revert(dom, snap.id, 0))
            # The snapshot carries the domain config of its time; the VM's own is the one
            # the node saved last (a resize since must not be undone by the revert).
            xml = await asyncio.to_thread(ctx.files(record.id).domain_xml.read_text)
            await ctx.host.define(xml)
    except LimiquantixError as exc:
        await _fail(ctx, record.id, snap.id, "vm.snapshot.revert", exc)
        return
    ready = msgspec.structs.replace(snap, state=SnapshotState.READY, error="")

    def reverted(r: VmRecord) -> VmRecord:
        return with_entry(r, snap.id, lambda _: ready) or r

    if snap.memory:  # the guest is as it was when the snapshot was taken: up, cloud-init done
        vnc = await vnc_endpoint(ctx, record.id)
        state = VmState.READY if record.guest.ready_at is not None else VmState.RUNNING
        updated = await ctx.recorder.transition(
            record.id, state, reason=f"reverted to snapshot {snap.name}",
            change=lambda r: msgspec.structs.replace(reverted(r), vnc=vnc))
    elif was_running:
        await ctx.recorder.patch(record.id, reverted)
        updated = await boot(ctx, record.id, reason=f"reverted to snapshot {snap.name}")
    else:
        updated = await ctx.recorder.transition(
            record.id, VmState.STOPPED, reason=f"reverted to snapshot {snap.name}",
            change=lambda r: msgspec.structs.replace(reverted(r), vnc=None))
    log.info("snapshot reverted", vm_id=record.id, snapshot_id=snap.id)
    await ctx.recorder.publish(VmSnapshotChanged(
        vm_id=record.id, name=(updated or record).name, node=ctx.node_id, action="reverted",
        snapshot=ready))


def _delete(dom: libvirt.virDomain, snapshot_id: str) -> None:
    snap = _lookup(dom, snapshot_id)
    if snap is not None:
        snap.delete(0)


async def delete_snapshot(ctx: AgentContext, command: DeleteSnapshot) -> None:
    """``vm.snapshot.delete``: from the disk and libvirt (when there), then from the record."""
    pending = await _pending(ctx, command, None)
    if pending is None:
        return
    record, snap = pending
    try:
        # The gateway refused this already when it saw the clones; a clone made since (or a
        # command that got through) must not lose its backing file (bases.py).
        users = await live_users(ctx, record.id, snap.id)
        if users:
            raise SnapshotInUse(f"snapshot {snap.name} is the base of {len(users)} linked "
                                f"clone(s): {', '.join(users)}")
        await _domain_ready(ctx, record)
        await ctx.host.with_domain("snapshot-delete", ctx.domain_uuid(record.id),
                                     lambda dom: _delete(dom, snap.id))
    except LimiquantixError as exc:
        await _fail(ctx, record.id, snap.id, "vm.snapshot.delete", exc)
        return
    await asyncio.to_thread(remove_base, ctx, record.id, snap.id)
    await asyncio.to_thread(snapshot_file(ctx, record.id, snap.id).unlink, missing_ok=True)
    updated = await ctx.recorder.patch(record.id, lambda r: with_entry(r, snap.id,
                                                                        lambda _: None))
    log.info("snapshot deleted", vm_id=record.id, snapshot_id=snap.id)
    await ctx.recorder.publish(VmSnapshotChanged(
        vm_id=record.id, name=(updated or record).name, node=ctx.node_id, action="deleted",
        snapshot=snap))


# --- metadata after libvirt forgot the domain ---------------------------------------------

def _redefine_missing(dom: libvirt.virDomain, wanted: list[tuple[str, str]]) -> int:
    known = {s.getName() for s in dom.listAllSnapshots()}
    count = 0
    for name, xml in wanted:
        if name in known:
            continue
        dom.snapshotCreateXML(xml, libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
        count += 1
    return count


async def restore_metadata(ctx: AgentContext, record: VmRecord) -> int:
    """Give libvirt back the metadata of the record's snapshots it does not list (the domain
    was undefined and defined again); the number redefined."""
    ready = [s for s in record.snapshots
             if s.state in (SnapshotState.READY, SnapshotState.REVERTING,
                            SnapshotState.DELETING)]
    if not ready:
        return 0
    files = ctx.files(record.id)

    def load() -> list[tuple[str, str]]:
        wanted = []
        domain = files.domain_xml.read_text() if files.domain_xml.exists() else ""
        for snap in ready:
            path = snapshot_file(ctx, record.id, snap.id)
            if path.exists():
                wanted.append((snap.id, path.read_text()))
            elif domain:
                wanted.append((snap.id, redefine_xml(snap, domain, main_disk(domain)[0])))
        return wanted

    wanted = await asyncio.to_thread(load)
    try:
        count = await ctx.host.with_domain(
            "snapshot-redefine", ctx.domain_uuid(record.id),
            lambda dom: _redefine_missing(dom, wanted))
    except LibvirtFailed as exc:
        log.warning("snapshot metadata not restored", vm_id=record.id, error=exc.message)
        return 0
    if count:
        log.info("snapshot metadata restored", vm_id=record.id, count=count)
    return count or 0
