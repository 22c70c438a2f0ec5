"""``vm.create``: image → overlay → seed ISO → domain XML → define → start → ``running``.

A catalog image still being imported by the library is waited for first, the VM ``pending``
with the download's progress; a VM without an image (boot media "none") gets a blank disk and
no seed.

Every step can run twice (a redelivered command after a crash): files appear under their real
name only when complete, the domain's UUID is the VM id and it is defined only when absent, the
domain is started only when not running, forwards already chosen are kept.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import structlog

from limiquantix.common.commands import CreateVm
from limiquantix.common.library_tokens import load_or_create_secret, node_key
from limiquantix.common.model import utcnow
from limiquantix.common.vms import NetworkSpec, PortForward, VmRecord, VmState
from limiquantix.common.vnc_auth import vnc_password
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.domain_boot import boot
from limiquantix.node_agent.domain_xml import (
    DomainSpec,
    NicModel,
    NicSpec,
    domain_name,
    mac_for,
    render,
)
from limiquantix.node_agent.errors import WrongNode
from limiquantix.node_agent.extra_disks import defined_disks
from limiquantix.node_agent.forwards import bind_forwards, ssh_command, wanted_forwards
from limiquantix.node_agent.guest_phases import defined_guest
from limiquantix.node_agent.images.local import LocalImage
from limiquantix.node_agent.images.source import Progress
from limiquantix.node_agent.overlay import create_blank
from limiquantix.node_agent.seed.iso import write_seed_iso
from limiquantix.node_agent.seed.media import seed_content
from limiquantix.node_agent.vm_files import write_atomic

log = structlog.get_logger()

RDP_PORT = 3389
CREATE_STATES = frozenset({VmState.PENDING, VmState.CREATING, VmState.STARTING})
PROGRESS_EVERY_S = 0.5


async def create_vm(ctx: AgentContext, command: CreateVm) -> None:
    """Carry out (or finish) the creation of a VM."""
    record = await ctx.recorder.find(command.vm_id)
    if record is None:
        log.info("create of a VM that no longer exists: nothing to do", vm_id=command.vm_id)
        return
    if record.node and record.node != ctx.node_id:
        raise WrongNode(f"VM {record.name} is placed on node {record.node}", node=record.node)
    if record.state not in CREATE_STATES:
        log.info("create already done", vm_id=record.id, state=str(record.state))
        return
    progress = _progress(ctx, record.id)
    if record.state == VmState.PENDING and record.image:
        await ctx.images.wait_for_import(record.image, on_progress=progress)
    if record.state == VmState.PENDING:
        record = await ctx.recorder.transition(
            record.id, VmState.CREATING, reason="creating", only_from=CREATE_STATES) or record
    image = await ctx.images.resolve(record.image, on_progress=progress) if record.image else None
    # Windows: the virtio-win ISO the gateway chose, fetched into the cache like any image.
    drivers = (await ctx.images.resolve(record.drivers_image, on_progress=progress)
               if record.drivers_image and record.os_type == "windows" else None)
    files = ctx.files(record.id)
    await asyncio.to_thread(files.make_dirs)
    if image is None or image.format == "iso":
        await create_blank(files.disk, record.disk_gib)
    else:
        await ctx.overlays.create(image, files.disk, record.disk_gib)
    await ctx.failpoints.hit("after_overlay")
    key = node_key(await asyncio.to_thread(load_or_create_secret, ctx.settings))
    if image is not None:  # an empty disk has no OS to read a seed
        # YAML rendering is pure CPU (~1.5 ms): off the loop, like the ISO build.
        content, label = await asyncio.to_thread(
            seed_content, record, key, from_iso=image.format == "iso",
            with_drivers=drivers is not None)
        await write_seed_iso(content, files.seed, label)
    record = await _bind_forwards(ctx, record)
    xml = render(domain_spec(ctx, record, image, vnc_password(key, record.id), drivers))
    await asyncio.to_thread(write_atomic, files.domain_xml, xml.encode())
    if await ctx.host.info(ctx.domain_uuid(record.id)) is None:
        await ctx.failpoints.hit("before_define")
        await ctx.host.define(xml)
    defined = await ctx.recorder.transition(
        record.id, VmState.STARTING, reason="defined", only_from=CREATE_STATES,
        change=lambda r: msgspec.structs.replace(r, image_progress=None,
                                                 serial_log=str(files.serial_log),
                                                 guest=defined_guest(utcnow())))
    if defined is None:  # a delete (queued behind us) was asked meanwhile: do not start
        log.info("create overtaken by another request; not starting", vm_id=record.id)
        return
    await ctx.failpoints.hit("before_start")
    await boot(ctx, record.id, reason="created", only_from=CREATE_STATES)


def domain_spec(ctx: AgentContext, record: VmRecord, image: LocalImage | None,
                vnc_key: str | None = None, drivers: LocalImage | None = None,
                media: LocalImage | None = None) -> DomainSpec:
    """The typed domain of a VM on this node (``media``: the ISO in its media drive)."""
    files = ctx.files(record.id)
    host = ctx.settings.console_host
    drivers_iso = str(drivers.path) if drivers is not None else None
    # Windows has no in-box virtio-net driver: e1000e unless virtio-win is attached.
    model: NicModel = ("e1000e" if record.os_type == "windows" and drivers_iso is None
                       else "virtio")
    nic = NicSpec(mode=record.network.mode, source=record.network.source,
                  mac=mac_for(record.id), forwards=record.forwards, forward_host=host,
                  outbound=ctx.settings.user_network_outbound, model=model)
    return DomainSpec(
        name=domain_name(record.name), uuid=ctx.domain_uuid(record.id), virt_type=ctx.virt_type,
        vcpus=record.vcpus, memory_mib=record.memory_mib, disk=str(files.disk),
        seed_iso=str(files.seed) if image is not None else None,
        install_iso=str(image.path) if image is not None and image.format == "iso" else None,
        serial_log=str(files.serial_log), console_host=host, nic=nic, vnc_password=vnc_key,
        os_type=record.os_type, drivers_iso=drivers_iso,
        secure_boot=record.windows is not None and record.windows.secure_boot,
        max_vcpus=record.max_vcpus, max_memory_mib=record.max_memory_mib,
        extra_disks=defined_disks(files, record),
        media_iso=str(media.path) if media is not None else None,
    )


def forwarded_network(record: VmRecord) -> NetworkSpec:
    """The VM's network, plus an RDP forward for Windows (like SSH's; unless RDP is off or the
    user forwarded guest port 3389 already)."""
    network = record.network
    rdp_off = record.windows is not None and not record.windows.enable_rdp
    if (record.os_type != "windows" or rdp_off
            or any(f.guest_port == RDP_PORT for f in network.forwards)):
        return network
    return msgspec.structs.replace(
        network, forwards=(*network.forwards, PortForward(guest_port=RDP_PORT, name="rdp")))


async def _bind_forwards(ctx: AgentContext, record: VmRecord) -> VmRecord:
    """Choose host ports once and store them (a redelivery finds them in the record)."""
    network = forwarded_network(record)
    if record.forwards or not wanted_forwards(network):
        return record
    host = ctx.settings.console_host
    forwards = bind_forwards(network, host, ctx.settings)
    ssh = ssh_command(forwards, record.cloud_init.user, host)

    def bound(current: VmRecord) -> VmRecord | None:
        if current.forwards:
            return None
        return msgspec.structs.replace(current, forwards=forwards, ssh_command=ssh)

    updated = await ctx.recorder.patch(record.id, bound)
    if updated is None:  # bound by an earlier attempt meanwhile
        updated, _ = await ctx.store.get(record.id)
    return updated


def _progress(ctx: AgentContext, vm_id: str) -> Progress:
    """Report image download progress in the record (the library's import while ``pending``,
    then the node's fetch while ``creating``), at most every PROGRESS_EVERY_S."""
    last = 0.0

    async def report(done: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < PROGRESS_EVERY_S and done != total:
            return
        last = now
        fraction = min(1.0, done / total) if total else None

        def note(record: VmRecord) -> VmRecord | None:
            if record.state not in (VmState.PENDING, VmState.CREATING):
                return None
            return msgspec.structs.replace(record, image_progress=fraction)
        await ctx.recorder.patch(vm_id, note)
    return report
