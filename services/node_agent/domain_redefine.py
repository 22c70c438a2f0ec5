"""Define a VM's domain again from its record: the one way a day-2 change (resize, extra disks,
media) reaches the definition, so the saved ``domain.xml`` and libvirt's persistent definition
stay the render of the record (``domain_xml.render``). On a running domain the new definition
takes effect at its next start; ``devices`` changes the live domain meanwhile.
"""

from __future__ import annotations

import asyncio

from limiquantix.common.library_tokens import load_or_create_secret, node_key
from limiquantix.common.vms import VmRecord, VmState
from limiquantix.common.vnc_auth import vnc_password
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.create import domain_spec
from limiquantix.node_agent.domain_xml import render
from limiquantix.node_agent.errors import WrongNode
from limiquantix.node_agent.images.local import LocalImage
from limiquantix.node_agent.vm_files import write_atomic


async def record_to_change(ctx: AgentContext, vm_id: str) -> VmRecord | None:
    """The record a day-2 command changes; None when the VM is gone or being deleted (nothing
    to do), WrongNode when it is placed on another node."""
    record = await ctx.recorder.find(vm_id)
    if record is None or record.state == VmState.DELETING:
        return None
    if record.node and record.node != ctx.node_id:
        raise WrongNode(f"VM {record.name} is placed on node {record.node}", node=record.node)
    return record


async def media_image(ctx: AgentContext, record: VmRecord) -> LocalImage | None:
    """The cached ISO the media drive should hold (fetched once into the node's cache)."""
    if record.media is None or record.media.state == "ejecting":
        return None
    return await ctx.images.resolve(record.media.image)


async def redefine(ctx: AgentContext, record: VmRecord) -> str:
    """Render the record's domain, save it and define it; returns the XML."""
    image = await ctx.images.resolve(record.image) if record.image else None
    drivers = (await ctx.images.resolve(record.drivers_image)
               if record.drivers_image and record.os_type == "windows" else None)
    media = await media_image(ctx, record)
    key = node_key(await asyncio.to_thread(load_or_create_secret, ctx.settings))
    xml = render(domain_spec(ctx, record, image, vnc_key=vnc_password(key, record.id),
                             drivers=drivers, media=media))
    await asyncio.to_thread(write_atomic, ctx.files(record.id).domain_xml, xml.encode())
    await ctx.host.define(xml)
    return xml
