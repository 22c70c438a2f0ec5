"""A VM's disk: a qcow2 overlay backed by the image (or a blank qcow2 for an ISO install).

The image is never written: the overlay records its path and format (``-F``) so QEMU never
probes it. The overlay is grown to the requested size when that is larger than the image's
virtual size, and never shrunk (shrinking would cut the guest's file system). Overlays hold the
guest's data: readable by QEMU only (``vm_files.restrict_file``) before they get their name.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from pathlib import Path

import structlog

from limiquantix.common.process import run_tool
from limiquantix.node_agent.images.local import LocalImage
from limiquantix.node_agent.vm_files import restrict_file, temp_path

log = structlog.get_logger()

GIB = 1 << 30
QEMU_IMG_TIMEOUT_S = 60.0


def overlay_size(image_virtual_size: int, disk_gib: int) -> int | None:
    """Bytes to give the overlay, or None to keep the image's virtual size."""
    wanted = disk_gib * GIB
    return wanted if wanted > image_virtual_size else None


async def create_overlay(image: LocalImage, dest: Path, disk_gib: int) -> bool:
    """Make ``dest`` backed by ``image``; False when it already exists (a redelivery)."""
    if await asyncio.to_thread(dest.exists):
        return False
    tmp = temp_path(dest)
    args = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", image.format,
            "-b", str(image.path), str(tmp)]
    size = overlay_size(image.virtual_size, disk_gib)
    if size is not None:
        args.append(str(size))
    await run_tool(args, timeout_s=QEMU_IMG_TIMEOUT_S)
    await asyncio.to_thread(_restrict_and_rename, tmp, dest)
    log.info("overlay created", disk=str(dest), backing=str(image.path), size=size)
    return True


async def create_blank(dest: Path, disk_gib: int) -> bool:
    """Make an empty qcow2 of ``disk_gib`` (the target disk of an ISO install)."""
    if await asyncio.to_thread(dest.exists):
        return False
    tmp = temp_path(dest)
    await run_tool(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp), str(disk_gib * GIB)],
                   timeout_s=QEMU_IMG_TIMEOUT_S)
    await asyncio.to_thread(_restrict_and_rename, tmp, dest)
    log.info("blank disk created", disk=str(dest), disk_gib=disk_gib)
    return True


class OverlayFactory:
    """Makes VM overlays by copying a per-image template made once with ``qemu-img create``.

    A fresh overlay holds nothing of its VM (header naming the backing file and format, empty
    tables), so a copy of a fresh one is the same file ``qemu-img create`` would write. Copying
    spares a process spawn per VM, which dominated the node's cost of a create (a burst of
    creates from one image is the common case). Templates are a cache: cleared at start.
    """

    def __init__(self, templates: Path) -> None:
        self._templates = templates
        self._locks: dict[Path, asyncio.Lock] = {}

    def reset(self) -> None:
        """Drop every template (blocking; call from a worker thread or at start-up)."""
        shutil.rmtree(self._templates, ignore_errors=True)
        self._templates.mkdir(mode=0o700, parents=True, exist_ok=True)  # read by us only

    def _template_path(self, image: LocalImage, disk_gib: int) -> Path:
        size = overlay_size(image.virtual_size, disk_gib)
        key = f"{image.path}|{image.format}|{image.virtual_size}|{size}"
        return self._templates / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.qcow2"

    async def _template(self, image: LocalImage, disk_gib: int) -> Path:
        path = self._template_path(image, disk_gib)
        lock = self._locks.setdefault(path, asyncio.Lock())
        async with lock:  # one qemu-img per template, however many VMs wait for it
            if not await asyncio.to_thread(path.exists):
                await create_overlay(image, path, disk_gib)
        return path

    async def create(self, image: LocalImage, dest: Path, disk_gib: int) -> bool:
        """Make ``dest`` backed by ``image``; False when it already exists (a redelivery)."""
        if await asyncio.to_thread(dest.exists):
            return False
        template = await self._template(image, disk_gib)
        await asyncio.to_thread(_copy_into_place, template, dest)
        log.info("overlay created", disk=str(dest), backing=str(image.path))
        return True


def _restrict_and_rename(tmp: Path, dest: Path) -> None:
    restrict_file(tmp)
    tmp.replace(dest)


def _copy_into_place(template: Path, dest: Path) -> None:
    tmp = temp_path(dest)
    shutil.copyfile(template, tmp)
    _restrict_and_rename(tmp, dest)
