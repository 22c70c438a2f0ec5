"""Live changes to a running domain's devices: vCPUs, memory DIMMs, block resize, extra disks
and the media drive. Each reads the live definition first and only changes what differs, so a
redelivered command after a crash does nothing twice (no second DIMM, no second disk).

libvirt's test driver has none of the device calls (attach, update, block resize): callers
skip this module on it (``LibvirtHost.is_test_driver``) and change the definition only.
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET

import libvirt

from limiquantix.node_agent.domain_xml import ExtraDiskSpec, device_xml, extra_disk, media_cdrom
from limiquantix.node_agent.errors import LibvirtFailed
from limiquantix.node_agent.libvirt_host import LibvirtHost

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
KIB = 1024
DETACH_WAIT_S = 10.0
DETACH_POLL_S = 0.1


class DetachTimedOut(LibvirtFailed):
    """The running domain did not release a disk in time."""

    code = "detach_timed_out"
    status = 409
    default_hint = "Stop the VM, then remove the disk again (it is then only in the definition)."


async def live_xml(host: LibvirtHost, dom_uuid: str) -> ET.Element | None:
    """The running domain's live definition; None when it is not running (or not defined)."""
    def read(dom: libvirt.virDomain) -> str | None:
        return str(dom.XMLDesc(0)) if dom.isActive() else None
    text = await host.with_domain("XMLDesc", dom_uuid, read)
    return None if text is None else ET.fromstring(text)


def _disk_where(root: ET.Element, child: str, attribute: str, value: str) -> ET.Element | None:
    """The first ``<disk>`` whose ``<child>`` has ``attribute`` = ``value``."""
    for disk in root.findall("./devices/disk"):
        found = disk.find(child)
        if found is not None and found.get(attribute) == value:
            return disk
    return None


def disk_by_source(root: ET.Element, path: str) -> ET.Element | None:
    """The live ``<disk>`` whose file is ``path``."""
    return _disk_where(root, "source", "file", path)


def disk_by_target(root: ET.Element, target: str) -> ET.Element | None:
    """The live ``<disk>`` on device ``target`` (``sde``, ...)."""
    return _disk_where(root, "target", "dev", target)


def live_vcpus(root: ET.Element) -> tuple[int, int]:
    """(current, maximum) vCPUs of a live definition."""
    vcpu = root.find("vcpu")
    maximum = int(vcpu.text or "1") if vcpu is not None else 1
    current = int(vcpu.get("current", maximum)) if vcpu is not None else 1
    return current, maximum


def live_memory_kib(root: ET.Element) -> tuple[int, int]:
    """(current total, hot-plug ceiling) memory of a live definition, in KiB (ceiling 0: none)."""
    memory = root.find("memory")
    ceiling = root.find("maxMemory")
    return (_kib(memory) if memory is not None else 0,
            _kib(ceiling) if ceiling is not None else 0)


def _kib(element: ET.Element) -> int:
    factor = {"KiB": 1, "MiB": KIB, "GiB": KIB * KIB, "b": 1, "bytes": 1}
    unit = element.get("unit", "KiB")
    value = int(element.text or "0")
    return value // KIB if unit in ("b", "bytes") else value * factor.get(unit, 1)


async def set_vcpus(host: LibvirtHost, dom_uuid: str, vcpus: int) -> None:
    """Hot-plug vCPUs up to ``vcpus`` (the guest onlines them)."""
    await host.with_domain("setVcpus", dom_uuid, lambda dom: dom.setVcpusFlags(vcpus, LIVE))


async def plug_memory(host: LibvirtHost, dom_uuid: str, kib: int) -> None:
    """Hot-plug one DIMM of ``kib`` into NUMA cell 0."""
    dimm = (f"<memory model='dimm'><target><size unit='KiB'>{kib}</size><node>0</node>"
            "</target></memory>")
    await host.with_domain("attach memory", dom_uuid,
                           lambda dom: dom.attachDeviceFlags(dimm, LIVE))


async def block_size(host: LibvirtHost, dom_uuid: str, target: str) -> int:
    """The virtual size in bytes the running domain sees for disk ``target``."""
    size = await host.with_domain("blockInfo", dom_uuid, lambda dom: dom.blockInfo(target)[0])
    return int(size or 0)


async def block_resize(host: LibvirtHost, dom_uuid: str, target: str, size: int) -> None:
    """Grow the running domain's disk ``target`` to ``size`` bytes (QEMU grows the file)."""
    await host.with_domain("blockResize", dom_uuid, lambda dom: dom.blockResize(
        target, size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES))


async def attach_disk(host: LibvirtHost, dom_uuid: str, disk: ExtraDiskSpec) -> None:
    xml = device_xml(extra_disk(disk))
    await host.with_domain("attach disk", dom_uuid, lambda dom: dom.attachDeviceFlags(xml, LIVE))


async def detach_disk(host: LibvirtHost, dom_uuid: str, path: str) -> bool:
    """Detach the live disk whose file is ``path`` and wait until QEMU let it go; False when
    the running domain did not have it."""
    root = await live_xml(host, dom_uuid)
    element = None if root is None else disk_by_source(root, path)
    if element is None:
        return False
    xml = ET.tostring(element, encoding="unicode")
    await host.with_domain("detach disk", dom_uuid, lambda dom: dom.detachDeviceFlags(xml, LIVE))
    deadline = time.monotonic() + DETACH_WAIT_S
    while True:  # SCSI disks go at once; the wait is for what a guest could hold on to
        root = await live_xml(host, dom_uuid)
        if root is None or disk_by_source(root, path) is None:
            return True
        if time.monotonic() > deadline:
            raise DetachTimedOut(f"the running domain still has the disk after "
                                 f"{DETACH_WAIT_S:g} s")
        await asyncio.sleep(DETACH_POLL_S)


async def change_media(host: LibvirtHost, dom_uuid: str, iso: str | None) -> None:
    """Put ``iso`` in the running domain's media drive (None: eject)."""
    xml = device_xml(media_cdrom(iso))
    await host.with_domain("change media", dom_uuid, lambda dom: dom.updateDeviceFlags(xml, LIVE))
