"""``vm.update_cloud_init``: rebuild the seed ISO from the record's new config and instance-id.

A new instance-id makes cloud-init treat the next boot as a first boot. A running domain gets the
new ISO re-inserted, so even a reboot from inside the guest sees it.
"""

from __future__ import annotations

import asyncio

import structlog

from limiquantix.common.commands import UpdateCloudInit
from limiquantix.common.library_tokens import load_or_create_secret, node_key
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.errors import LibvirtFailed
from limiquantix.node_agent.seed.iso import write_seed_iso
from limiquantix.node_agent.seed.media import seed_content

log = structlog.get_logger()

SEED_TARGET = "sda"


async def update_cloud_init(ctx: AgentContext, command: UpdateCloudInit) -> None:
    # The gateway wrote ``cloud_init`` and ``instance_id`` on the record before it queued this
    # command (one writer per record field: docs/architecture.md); the seed is rebuilt from the
    # record, so a later update that overtook this one wins here too.
    record = await ctx.store.find(command.vm_id)
    if record is None:
        return
    files = ctx.files(record.id)
    # The same files as the create's seed (a Windows VM keeps its answer file): whether it
    # installs from an ISO is the image's format, in this node's cache since the create.
    image = await ctx.images.resolve(record.image) if record.image else None
    key = node_key(await asyncio.to_thread(load_or_create_secret, ctx.settings))
    content, label = await asyncio.to_thread(
        seed_content, record, key, from_iso=image is not None and image.format == "iso",
        with_drivers=bool(record.drivers_image) and record.os_type == "windows")
    await write_seed_iso(content, files.seed, label)
    if ctx.host.is_test_driver:  # the test driver cannot change media
        return
    try:
        await ctx.host.change_cdrom(ctx.domain_uuid(record.id), SEED_TARGET, str(files.seed))
    except LibvirtFailed as exc:  # the new seed is used at the next start anyway
        log.warning("could not re-insert the seed ISO live", vm_id=record.id, error=exc.message)
    log.info("cloud-init updated", vm_id=record.id, instance_id=command.instance_id)
