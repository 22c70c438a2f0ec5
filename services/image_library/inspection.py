"""Decide what a downloaded or uploaded file really is before it may become ``active``.

Every file goes through qemu-img's format probe first (``qemu-img info``, run under resource
limits: ``qemu_img.run_limited``), whatever it claims to be. ISO 9660 install media are what
qemu-img calls ``raw`` and carry the ISO signature; a file qemu-img reads as a disk format
(qcow2, ...) that *also* carries the signature is a polyglot and is refused: it would pass as
an inert ISO here and be opened as a qcow2 (with its backing file) elsewhere. Disks must agree
with the declared format; backing files and external data files are refused
(``qemu_img.check_safe``: the Glance/Nova CVE class); qcow2 files pass ``qemu-img check``.
Reasons never carry the library's own paths.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from limiquantix.common import qemu_img
from limiquantix.common.model import Model
from limiquantix.common.process import ToolFailed
from limiquantix.image_library.errors import NotAnImage


class Inspected(Model, frozen=True, kw_only=True):
    format: str
    virtual_size: int
    file_size: int


async def is_iso9660(path: Path) -> bool:
    """True when the file carries the ISO9660 primary volume descriptor signature."""
    return await asyncio.to_thread(qemu_img.is_iso9660, path)


async def _qcow2_check(path: Path) -> None:
    """``qemu-img check`` (limited): 0 clean, 3 leaked clusters only (harmless); else corrupt."""
    try:
        status, _, stderr = await qemu_img.run_limited(
            ["check", "-f", "qcow2", str(path)], qemu_img.CHECK_LIMITS)
    except ToolFailed as exc:
        raise NotAnImage(f"qemu-img check: {exc.message}") from None
    if status not in (0, 3):
        detail = qemu_img.scrub(qemu_img.exit_reason(status, stderr), path)
        raise NotAnImage(f"the qcow2 image is corrupt: {detail}")


async def inspect(path: Path, declared: str = "") -> Inspected:
    """The file's real format and virtual size; NotAnImage / UnsafeImage when refused."""
    file_size = (await asyncio.to_thread(path.stat)).st_size
    if file_size == 0:
        raise NotAnImage("the file is empty")
    try:
        info = await qemu_img.info(path)
    except ToolFailed as exc:
        raise NotAnImage(f"qemu-img cannot read the file: {exc.message}") from None
    if await is_iso9660(path):
        if info.format != "raw":
            raise NotAnImage(
                f"the file is both an ISO9660 image and {info.format}: a polyglot; refused",
                detected=info.format)
        if declared not in ("", "iso"):
            raise NotAnImage(f"declared {declared} but the file is an ISO9660 image")
        return Inspected(format="iso", virtual_size=file_size, file_size=file_size)
    if declared == "iso":
        raise NotAnImage("declared iso but the file has no ISO9660 signature (CD001 at 0x8001)")
    if declared and info.format != declared:
        what = "raw data (no qcow2 header)" if info.format == "raw" else info.format
        raise NotAnImage(f"declared {declared} but the file is {what}", detected=info.format)
    qemu_img.check_safe(info)
    if info.format == "qcow2":
        await _qcow2_check(path)
    return Inspected(format=info.format, virtual_size=info.virtual_size, file_size=file_size)
