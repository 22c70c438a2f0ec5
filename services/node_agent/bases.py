"""Frozen bases: one read-only qcow2 per snapshot, the backing file of linked clones made at it.

A linked clone needs a base that never changes. A template's disk is one (it never runs
again); for any other VM the node freezes a *snapshot*: ``<vm dir>/bases/<snapshot id>.qcow2``
is written once from the internal snapshot (``qemu-img convert -U -l snapshot.name=<id>``) and
kept, read-only, for every later linked clone of that snapshot.

Why a copy and not the snapshot itself: QEMU cannot open an internal snapshot as a backing
file (no blockdev option selects one), and the VM's own disk keeps changing. Reading the
internal snapshot of a disk QEMU has open is safe with ``-U`` (force-share): a snapshot's L1/L2
tables and clusters are copy-on-write in qcow2, QEMU never rewrites them while the snapshot
exists, and the source's lock on the node keeps snapshots from being taken or deleted
meanwhile. When the VM's disk has a backing file (the cached image, a template's disk), the
base keeps it (``-B``): only the VM's own clusters at the snapshot are copied, so a base
costs what the VM wrote, not the image's size.

Who depends on a base: one empty marker file per linked clone in ``bases/<snapshot id>.users/``
written before the clone's overlay exists. A marker whose clone no longer has a record (deleted,
or forced away) is stale and dropped when counted. A snapshot with live markers is not deleted
(the gateway refuses first, naming the clones; the node refuses too); deleting the snapshot
deletes its base.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import structlog

from limiquantix.common import qemu_img
from limiquantix.common.process import ToolFailed, run_tool
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.errors import NodeAgentError
from limiquantix.node_agent.vm_files import path_inside, restrict_dir, restrict_file, temp_path

log = structlog.get_logger()

BASES_DIR = "bases"
CONVERT_TIMEOUT_S = 3600.0


class BaseFailed(NodeAgentError):
    """qemu-img could not freeze the snapshot into a base file."""

    code = "disk_copy_failed"
    default_hint = "See the message; the node's disk may be full."


class SnapshotInUse(NodeAgentError):
    """Linked clones are backed by the snapshot's frozen base."""

    code = "snapshot_in_use"
    status = 409
    default_hint = "Delete the linked clones made at this snapshot first, then the snapshot."


def base_path(ctx: AgentContext, vm_id: str, snapshot_id: str) -> Path:
    """Where the frozen base of ``snapshot_id`` of VM ``vm_id`` lives."""
    return path_inside(ctx.files(vm_id).root / BASES_DIR, f"{snapshot_id}.qcow2")


def users_dir(base: Path) -> Path:
    """The directory of markers of the clones that depend on ``base``."""
    return base.with_name(f"{base.stem}.users")


async def _backing_of(disk: Path) -> tuple[str, str] | None:
    """(absolute backing file, its format) of ``disk``, None when it has none."""
    try:
        info = await qemu_img.info(disk, fmt="qcow2", force_share=True)
    except ToolFailed as exc:
        raise BaseFailed(f"reading the VM's disk failed: {exc.message}") from None
    backing = info.full_backing_filename or info.backing_filename
    if not backing:
        return None
    return backing, info.backing_filename_format or "qcow2"


def _read_only(path: Path) -> None:
    """The base is never written again: no write bit for anyone (QEMU opens it read-only as
    a backing file; a mistaken writer fails instead of corrupting every clone)."""
    mode = path.stat().st_mode & 0o7777
    if mode & 0o222:
        path.chmod(mode & ~0o222)


def _make_dir(path: Path) -> None:
    path.mkdir(mode=0o700, exist_ok=True)
    restrict_dir(path)


async def frozen_base(ctx: AgentContext, vm_id: str, snapshot_id: str) -> tuple[Path, int | None]:
    """The base of the snapshot, made now when missing: (its path, its size in bytes when it
    was made by this call, None when it existed). The caller holds the VM's lock."""
    base = base_path(ctx, vm_id, snapshot_id)
    if await asyncio.to_thread(base.exists):
        await asyncio.to_thread(_read_only, base)  # a crash between rename and chmod
        return base, None
    await asyncio.to_thread(_make_dir, base.parent)
    disk = ctx.files(vm_id).disk
    backing = await _backing_of(disk)
    args = ["qemu-img", "convert", "-U", "-O", "qcow2", "-l", f"snapshot.name={snapshot_id}"]
    if backing is not None:
        args += ["-B", backing[0], "-F", backing[1]]
    tmp = temp_path(base)
    try:
        await run_tool([*args, str(disk), str(tmp)], timeout_s=CONVERT_TIMEOUT_S)
    except ToolFailed as exc:
        await asyncio.to_thread(tmp.unlink, missing_ok=True)
        raise BaseFailed(f"freezing snapshot {snapshot_id} failed: {exc.message}") from None

    def place() -> int:
        restrict_file(tmp)
        _read_only(tmp)
        tmp.replace(base)  # under its name only when complete: a crash leaves no half base
        return base.stat().st_size
    size = await asyncio.to_thread(place)
    log.info("snapshot frozen into a base", vm_id=vm_id, snapshot_id=snapshot_id, bytes=size,
             backing=backing[0] if backing else None)
    return base, size


def add_user(base: Path, clone_id: str) -> None:
    """Mark clone ``clone_id`` as depending on ``base`` (before its overlay exists)."""
    users = users_dir(base)
    _make_dir(users)
    marker = path_inside(users, clone_id)
    fd = os.open(marker, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)


async def live_users(ctx: AgentContext, vm_id: str, snapshot_id: str) -> list[str]:
    """Ids of the clones that still depend on the snapshot's base (stale markers dropped)."""
    users = users_dir(base_path(ctx, vm_id, snapshot_id))

    def names() -> list[str]:
        return sorted(p.name for p in users.iterdir()) if users.is_dir() else []

    live = []
    for clone_id in await asyncio.to_thread(names):
        record = await ctx.store.find(clone_id)
        source = record.clone_of if record is not None else None
        if source is not None and source.vm_id == vm_id and source.snapshot_id == snapshot_id:
            live.append(clone_id)
        else:
            await asyncio.to_thread((users / clone_id).unlink, missing_ok=True)
    return live


def remove_base(ctx: AgentContext, vm_id: str, snapshot_id: str) -> None:
    """Delete the snapshot's base and its (empty) marker directory, if any."""
    base = base_path(ctx, vm_id, snapshot_id)
    users = users_dir(base)
    if users.is_dir():
        for marker in users.iterdir():
            marker.unlink(missing_ok=True)
        users.rmdir()
    temp_path(base).unlink(missing_ok=True)
    base.unlink(missing_ok=True)
