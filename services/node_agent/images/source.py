"""Turns a VM's ``image`` into a :class:`LocalImage`: a library image id via the cache, or a
node path inside the operator's ``LQ_HOST_IMAGE_DIRS``.

A path is resolved (symlinks too) and must stay inside an allowed directory, else it is refused
with the same words whether or not it exists (no file-existence oracle). It is inspected with
``qemu-img`` and refused when it names a backing or data file (the Glance/Nova CVE class); an ISO
is told apart from a raw disk by its signature.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import structlog

from limiquantix.common.qemu_img import inspect_safe, is_iso9660
from limiquantix.image_library.client import ImageLibraryClient
from limiquantix.node_agent.errors import HostPathNotAllowed, ImageNotFound
from limiquantix.node_agent.images.local import ImageFormat, LocalImage
from limiquantix.node_agent.images.wait import wait_until_active

log = structlog.get_logger()

Progress = Callable[[int, int | None], Awaitable[None]]

INSPECTION_CACHE_SIZE = 256


class ImageFetcher(Protocol):
    """Catalog id -> local file: the node's ``ImageCache`` (tests may pass their own)."""

    library: ImageLibraryClient
    transient_retry_s: float

    async def ensure(self, image_id: str, *, on_progress: Progress | None = None) -> LocalImage:
        ...


def inside_roots(path: Path, roots: tuple[str, ...]) -> Path:
    """``path`` with symlinks resolved, when that lies inside one of ``roots``."""
    real = Path(os.path.realpath(path))
    for root in roots:
        if real.is_relative_to(os.path.realpath(root)):
            return real
    raise HostPathNotAllowed("the image path is not inside a directory allowed for node images")


async def inspect_path(path: Path) -> LocalImage:
    """A node-local image file, checked."""
    if not await asyncio.to_thread(path.is_file):
        raise ImageNotFound(f"image {str(path)!r} does not exist on this node", path=str(path))
    info = await inspect_safe(path)
    if info.format == "raw" and await asyncio.to_thread(is_iso9660, path):
        return LocalImage(path=path, format="iso", virtual_size=info.virtual_size)
    fmt: ImageFormat = "qcow2" if info.format == "qcow2" else "raw"
    return LocalImage(path=path, format=fmt, virtual_size=info.virtual_size)


def _identity(path: Path) -> tuple[str, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path), st.st_ino, st.st_mtime_ns, st.st_size)


class ImageSource:
    """Resolves images for VM creation on this node.

    Inspections of node paths are remembered by the file's identity (inode, mtime, size): many
    VMs from one image cost one ``qemu-img info``, and a changed file is inspected again.
    """

    def __init__(self, cache: ImageFetcher, host_roots: tuple[str, ...] = ()) -> None:
        self._cache = cache
        self._host_roots = host_roots
        self._inspected: dict[tuple[str, int, int, int], LocalImage] = {}

    async def resolve(self, image: str, *, on_progress: Progress | None = None) -> LocalImage:
        """The local file of ``image`` (an absolute node path, or a catalog id)."""
        if image.startswith("/"):
            path = await asyncio.to_thread(inside_roots, Path(image), self._host_roots)
            return await self._inspect(path)
        return await self._cache.ensure(image, on_progress=on_progress)

    async def wait_for_import(self, image: str, *, on_progress: Progress | None = None) -> None:
        """Wait until the library has the image (a catalog entry being imported for this VM)."""
        if not image.startswith("/"):
            await wait_until_active(self._cache.library, image, on_progress=on_progress,
                                    gone_s=self._cache.transient_retry_s)

    async def _inspect(self, path: Path) -> LocalImage:
        identity = await asyncio.to_thread(_identity, path)
        known = self._inspected.get(identity) if identity else None
        if known is not None:
            return known
        image = await inspect_path(path)
        if identity is not None:
            if len(self._inspected) >= INSPECTION_CACHE_SIZE:
                self._inspected.clear()
            self._inspected[identity] = image
        return image
