"""What a create's ``image`` names, checked before anything is made.

A VM that cannot work is refused up front (404/409/422 with a hint) instead of becoming a VM in
``error`` to clean up. An image is named by its library id or its unique name; a catalog entry
not downloaded yet (``remote``) has its import started here (or joins the one running), and the
node waits for it with the VM in ``pending``. Node paths are the operator's escape hatch, off by
default: only inside ``LQ_HOST_IMAGE_DIRS``, and never looked at here (the node checks the file),
so the API cannot be used to ask whether a path exists.
"""

from __future__ import annotations

import dataclasses
import posixpath

from limiquantix.api.errors import (
    DiskTooSmall,
    HostPathNotAllowed,
    ImageNameAmbiguous,
    ImageNotFound,
    ImageNotReady,
)
from limiquantix.common import windows
from limiquantix.common.errors import RemoteError
from limiquantix.common.images import CreateImageRequest, ImageRecord, ImageState, ListImages
from limiquantix.common.settings import Settings
from limiquantix.image_library.client import ImageLibraryClient
from limiquantix.image_library.errors import ImageBusy

GIB = 1 << 30
# States a VM can be made from now or once the download in progress is done.
USABLE = frozenset({ImageState.ACTIVE, ImageState.QUEUED, ImageState.DOWNLOADING,
                    ImageState.VERIFYING, ImageState.UPLOADING})
REMOTE = frozenset({ImageState.REMOTE, ImageState.AVAILABLE})


def allowed_host_path(path: str, roots: tuple[str, ...]) -> str:
    """``path`` normalised, when it lies inside one of ``roots``; else HostPathNotAllowed."""
    normal = posixpath.normpath(path)
    if ".." not in path.split("/") and any(
            normal == root or normal.startswith(root.rstrip("/") + "/") for root in roots):
        return normal
    raise HostPathNotAllowed(
        "node paths are not allowed as images here" if not roots
        else "the image path is outside the directories allowed for node images",
        image=path)


async def _find(client: ImageLibraryClient, ref: str) -> ImageRecord:
    try:
        return await client.get(ref)
    except RemoteError as exc:
        if exc.reply.code != "image_not_found":
            raise
    named = [image for image in (await client.list()).images if image.name == ref]
    if len(named) > 1:
        raise ImageNameAmbiguous(
            f"{len(named)} images are named {ref!r}", image=ref,
            ids=sorted(image.id for image in named))
    if not named:
        raise ImageNotFound(f"no image has the id or name {ref!r}", image=ref)
    return named[0]


def _check_disk(image: ImageRecord, disk_gib: int) -> None:
    if image.format == "iso":  # an ISO is a cdrom before a blank disk: any size will do
        return
    need = max(image.min_disk_gib, -(-(image.virtual_size or 0) // GIB))
    if disk_gib < need:
        raise DiskTooSmall(
            f"image {image.name!r} needs a disk of at least {need} GiB; {disk_gib} GiB asked",
            hint=f"Ask for a disk of {need} GiB or more (`--disk {need}G`, `disk_gib`).",
            image=image.id, min_disk_gib=need)


@dataclasses.dataclass(frozen=True)
class VmImage:
    """The ``image`` a new VM record stores (an image id, an allowed node path, or '' for
    none), and the library record when it is a catalog entry still to download."""

    ref: str
    remote: ImageRecord | None = None
    os: str = ""  # the catalog entry's ``os`` (decides a VM's default os_type)


async def resolve_for_create(client: ImageLibraryClient, settings: Settings, ref: str | None,
                             disk_gib: int) -> VmImage:
    """Check the image a create names; nothing is started here (see ``start_download``)."""
    if ref is None:
        return VmImage("")
    if ref.startswith("/"):
        return VmImage(allowed_host_path(ref, settings.host_image_roots))
    image = await _find(client, ref)
    if image.state not in USABLE | REMOTE:
        reason = f": {image.error}" if image.error else ""
        raise ImageNotReady(f"image {image.name!r} is {image.state}{reason}", image=image.id,
                            state=str(image.state))
    _check_disk(image, disk_gib)
    return VmImage(image.id, image if image.state in REMOTE else None, os=image.os)


async def virtio_win(client: ImageLibraryClient) -> str:
    """The id of the library's virtio-win ISO a Windows VM gets as drivers; '' when none."""
    listed = await client.list(ListImages(state=ImageState.ACTIVE, format="iso"))
    found = windows.pick_virtio_win(listed.images)
    return found.id if found is not None else ""


async def start_download(client: ImageLibraryClient, image: VmImage) -> None:
    """Start importing a catalog entry the VM needs (joining an import already running)."""
    if image.remote is None:
        return
    try:
        await client.import_image(CreateImageRequest(catalog_id=image.remote.id))
    except RemoteError as exc:
        if exc.reply.code != ImageBusy.code:  # already queued by a concurrent create: join it
            raise
