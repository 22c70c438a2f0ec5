"""``vm.media_insert`` / ``vm.media_eject``: an ISO from the library in the media CD-ROM drive
(``sde``; never the seed drive ``sda``).

The ISO is fetched through the node's image cache like any image. The definition gets it (or
loses it) first, then a running domain's drive is changed live (``updateDeviceFlags``: QEMU
changes the medium of a SATA drive, it cannot add one live), then the record says so. Each
step looks first, so a redelivery after a crash finishes the change without repeating it.
"""

from __future__ import annotations

import msgspec
import structlog

from limiquantix.common.commands import EjectMedia, InsertMedia
from limiquantix.common.events import VmMediaEjected, VmMediaInserted
from limiquantix.common.vms import MEDIA_TARGET, VmRecord
from limiquantix.node_agent import devices
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.domain_redefine import media_image, record_to_change, redefine
from limiquantix.node_agent.errors import UnsupportedImage

log = structlog.get_logger()


async def _set_live(ctx: AgentContext, record: VmRecord, iso: str | None) -> bool:
    """Change a running domain's media drive to ``iso``; True when the running domain has it
    (False: not running, or a domain defined before it had a media drive)."""
    if ctx.host.is_test_driver:
        return False
    dom_uuid = ctx.domain_uuid(record.id)
    root = await devices.live_xml(ctx.host, dom_uuid)
    drive = None if root is None else devices.disk_by_target(root, MEDIA_TARGET)
    if drive is None:
        return False
    source = drive.find("source")
    if (source.get("file") if source is not None else None) != iso:
        await devices.change_media(ctx.host, dom_uuid, iso)
    return True


async def insert_media(ctx: AgentContext, command: InsertMedia) -> None:
    record = await record_to_change(ctx, command.vm_id)
    media = None if record is None else record.media
    if record is None or media is None or media.state == "ejecting":
        log.info("media insert: nothing to do", vm_id=command.vm_id)
        return
    image = await media_image(ctx, record)
    if image is None or image.format != "iso":
        raise UnsupportedImage(f"image {media.image!r} is not an ISO",
                               hint="Insert an ISO image (`lq image list` shows formats).")
    await redefine(ctx, record)
    live = await _set_live(ctx, record, str(image.path))

    def inserted(current: VmRecord) -> VmRecord | None:
        if current.media is None or current.media.image != media.image:
            return None
        return msgspec.structs.replace(current, media=msgspec.structs.replace(
            current.media, state="inserted", path=str(image.path)))

    updated = await ctx.recorder.patch(record.id, inserted) or record
    await ctx.recorder.publish(VmMediaInserted(
        vm_id=record.id, name=record.name, node=ctx.node_id, media=updated.media or media,
        live=live))
    log.info("media inserted", vm_id=record.id, image=media.image, live=live)


async def eject_media(ctx: AgentContext, command: EjectMedia) -> None:
    record = await record_to_change(ctx, command.vm_id)
    if record is None:
        return
    image = record.media.image if record.media is not None else ""
    await redefine(ctx, record)  # the record's media is 'ejecting' (or gone): an empty drive
    await _set_live(ctx, record, None)

    def ejected(current: VmRecord) -> VmRecord | None:
        if current.media is None or current.media.state != "ejecting":
            return None
        return msgspec.structs.replace(current, media=None)

    await ctx.recorder.patch(record.id, ejected)
    await ctx.recorder.publish(VmMediaEjected(vm_id=record.id, name=record.name,
                                              node=ctx.node_id, image=image))
    log.info("media ejected", vm_id=record.id, image=image)
