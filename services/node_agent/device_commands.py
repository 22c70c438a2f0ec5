"""The day-2 device commands (resize, extra disks, media: docs/day2.md), one handler each."""

from __future__ import annotations

from limiquantix.common.commands import (
    AttachDisk,
    DetachDisk,
    DeviceCommand,
    EjectMedia,
    InsertMedia,
    ResizeVm,
)
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.disks import attach_disk, detach_disk
from limiquantix.node_agent.media import eject_media, insert_media
from limiquantix.node_agent.resize import resize_vm


async def run_device_command(ctx: AgentContext, command: DeviceCommand) -> None:
    """Carry out one device command (the caller holds the VM's lock and records failures)."""
    match command:
        case ResizeVm():
            await resize_vm(ctx, command)
        case AttachDisk():
            await attach_disk(ctx, command)
        case DetachDisk():
            await detach_disk(ctx, command)
        case InsertMedia():
            await insert_media(ctx, command)
        case EjectMedia():
            await eject_media(ctx, command)
