"""Decide what a downloaded or uploaded file really is before it may become ``active``.

ISO9660 install media are recognised by their signature; disks by ``qemu-img info``, which must
agree with the declared format. Backing files and external data files are refused
(``qemu_img.check_safe``: the Glance/Nova CVE class).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from limiquantix.common import qemu_img
from limiquantix.common.base import Model
from limiquantix.image_library.errors import NotAnImage

CHECK_TIMEOUT_S = 300.0


class Inspected(Model, frozen=True, kw_only=True):
    format: str
    virtual_size: int
    file_size: int


async def is_iso9660(path: Path) -> bool:
    """True when the file carries the ISO9660 primary volume descriptor signature."""
    return await asyncio.to_thread(qemu_img.is_iso9660, path)


async def _qcow2_check(path: Path) -> None:
    """``qemu-img check``: 0 clean, 3 leaked clusters only (harmless); anything else is corrupt."""
    proc = await asyncio.create_subprocess_exec(
        "qemu-img", "check", "-f", "qcow2", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), CHECK_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise NotAnImage(f"qemu-img check took longer than {CHECK_TIMEOUT_S:g} s") from None
    if proc.returncode not in (0, 3):
        detail = stderr.decode(errors="replace").strip()[:500]
        raise NotAnImage(f"the qcow2 image is corrupt: {detail or 'qemu-img check failed'}")


async def inspect(path: Path, declared: str = "") -> Inspected:
    """The file's real format and virtual size; NotAnImage / UnsafeImage when refused."""
    file_size = (await asyncio.to_thread(path.stat)).st_size
    if file_size == 0:
        raise NotAnImage("the file is empty")
    if await is_iso9660(path):
        if declared not in ("", "iso"):
            raise NotAnImage(f"declared {declared} but the file is an ISO9660 image")
        return Inspected(format="iso", virtual_size=file_size, file_size=file_size)
    if declared == "iso":
        raise NotAnImage("declared iso but the file has no ISO9660 signature (CD001 at 0x8001)")
    try:
        info = await qemu_img.info(path)
    except Exception as exc:
        raise NotAnImage(f"qemu-img cannot read the file: {exc}") from None
    if declared and info.format != declared:
        what = "raw data (no qcow2 header)" if info.format == "raw" else info.format
        raise NotAnImage(f"declared {declared} but the file is {what}", detected=info.format)
    qemu_img.check_safe(info)
    if info.format == "qcow2":
        await _qcow2_check(path)
    return Inspected(format=info.format, virtual_size=info.virtual_size, file_size=file_size)
