"""Domain XML as a pure function of a typed :class:`DomainSpec` (checked against golden files).

Choices, and why:
- q35 machine, virtio disk, the seed ISO as a SATA cdrom (q35 has no IDE), boot order per device
  (an ISO install boots its cdrom first, then the disk it installs to).
- A serial console logged to ``serial.log`` (``append='on'``: readiness follows it across boots)
  and a VNC display bound to the node's console address; VGA video; no memory balloon.
- ``user`` and ``isolated`` networks go through the QEMU namespace: libvirt's ``type='user'``
  interface cannot set ``restrict=on`` nor bind forwards to one address. The device gets an
  explicit free slot on ``pcie.0`` (otherwise it takes slot 1 and VGA fails to start).
- Both are ``restrict=on`` (only the declared forwards reach the guest; the guest reaches
  nothing): unrestricted slirp makes 10.0.2.2 the *host's loopback*, where NATS, the API and
  the image library listen. ``user`` drops the restriction only when the node opts in
  (``LQ_USER_NETWORK_OUTBOUND``, ``NicSpec.outbound``): then the guest has outbound NAT *and*
  reaches the host's loopback services; ``isolated`` never does.
- The MAC is derived from the VM id, so a redefined domain keeps its guest's network identity.

Windows-shaped domains (``os_type='windows'``, docs/windows.md) differ where Windows needs it:
UEFI chosen by libvirt from the firmware descriptors OVMF installs (``firmware='efi'``; Secure
Boot optional, it needs SMM), a TPM 2.0 emulated by swtpm (Windows 11 / Server 2022+ refuse to
install without one), Hyper-V enlightenments (Windows runs as it does on Hyper-V: fewer exits),
the RTC in local time (Windows keeps local time in the RTC), a USB tablet (absolute pointer: the
VNC cursor stays aligned). Windows has no in-box virtio drivers: without a virtio-win ISO the disk
is SATA and the NIC e1000e; with one, virtio for both and the ISO as another CD-ROM.
Every domain has the QEMU guest agent's virtio-serial channel (``org.qemu.guest_agent.0``,
docs/guest-agent.md): harmless without an agent in the guest, and libvirt then reports the agent's
connection (lifecycle events) and relays its commands. libvirt picks the host socket's path.
CD-ROM targets are fixed (seed ``sda``, install ISO ``sdb``, drivers ``sdc``; a SATA system disk
``sdd``), so the seed is ``sda`` on every domain (re-inserted live by that name).

Day-2 devices (docs/day2.md): every domain has an empty media CD-ROM (SATA ``sde``: QEMU cannot
hot-plug a SATA drive, but it changes the medium of one live) and, when virtio-capable, a
virtio-scsi controller for extra disks (SCSI disks attach and detach live without the guest's
help and need no free PCIe port; each has a fixed SCSI unit). Hot-plug ceilings: ``<vcpu
current=N>MAX`` (QEMU hot-plugs CPUs on q35, TCG included) and, for memory, ``<maxMemory
slots=16>`` with one NUMA cell holding the boot memory (DIMMs are hot-plugged into it); both only
when the ceiling is above the current figure, so a domain without headroom is unchanged.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from typing import Literal

import msgspec

from limiquantix.common.vms import MEDIA_TARGET, NetworkMode, OsType, PortForward

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
NIC_PCI_ADDRESS = "0x0a"
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"

VirtType = Literal["test", "kvm", "qemu"]
NicModel = Literal["virtio", "e1000e"]  # e1000e: Windows without virtio drivers


class NicSpec(msgspec.Struct, frozen=True, kw_only=True):
    """The VM's one NIC; ``forwards`` carry host ports already chosen (never 0)."""

    mode: NetworkMode = "none"
    source: str = ""  # bridge or libvirt network name
    mac: str = ""
    forwards: tuple[PortForward, ...] = ()
    forward_host: str = "127.0.0.1"
    outbound: bool = False  # ``user`` mode only: slirp without restrict=on (see docstring)
    model: NicModel = "virtio"


MEMORY_SLOTS = 16  # DIMM slots for memory hot-plug (each live grow takes one until restart)


class ExtraDiskSpec(msgspec.Struct, frozen=True, kw_only=True):
    """An extra qcow2 disk on the virtio-scsi controller, at a fixed SCSI ``unit``."""

    path: str
    target: str
    unit: int


class DomainSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the domain XML depends on."""

    name: str  # the domain name, "lq-<vm name>"
    uuid: str  # the VM id
    virt_type: VirtType
    vcpus: int
    memory_mib: int
    disk: str
    disk_format: str = "qcow2"
    seed_iso: str | None = None
    install_iso: str | None = None
    serial_log: str
    console_host: str = "127.0.0.1"
    nic: NicSpec = NicSpec()
    vnc_password: str | None = None  # libs/common/vnc_auth.py; the console proxy answers it
    os_type: OsType = "linux"
    secure_boot: bool = False  # windows only
    drivers_iso: str | None = None  # windows only: virtio-win; its presence selects virtio
    max_vcpus: int = 0  # hot-plug ceiling; <= vcpus: none
    max_memory_mib: int = 0  # hot-plug ceiling; <= memory_mib: none
    extra_disks: tuple[ExtraDiskSpec, ...] = ()
    media_iso: str | None = None  # the ISO in the media drive (sde); None: the drive is empty


def domain_name(vm_name: str) -> str:
    """The libvirt domain name of a VM."""
    return f"lq-{vm_name}"


def mac_for(vm_id: str) -> str:
    """A stable locally administered MAC in QEMU's 52:54:00 range, from the VM id."""
    digest = uuid.uuid5(uuid.NAMESPACE_OID, vm_id).bytes
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _disk(devices: ET.Element, *, device: str, fmt: str, source: str, target: str, bus: str,
          boot: int | None) -> None:
    disk = _sub(devices, "disk", type="file", device=device)
    _sub(disk, "driver", name="qemu", type=fmt)
    _sub(disk, "source", file=source)
    _sub(disk, "target", dev=target, bus=bus)
    if device == "cdrom":
        _sub(disk, "readonly")
    if boot is not None:
        _sub(disk, "boot", order=str(boot))


def virtio_capable(spec: DomainSpec) -> bool:
    """Linux always; Windows only with the virtio-win drivers at hand."""
    return spec.os_type != "windows" or spec.drivers_iso is not None


def _storage(devices: ET.Element, spec: DomainSpec) -> None:
    disk_boot = 2 if spec.install_iso else 1
    target, bus = ("vda", "virtio") if virtio_capable(spec) else ("sdd", "sata")
    _disk(devices, device="disk", fmt=spec.disk_format, source=spec.disk, target=target,
          bus=bus, boot=disk_boot)
    if spec.seed_iso:
        _disk(devices, device="cdrom", fmt="raw", source=spec.seed_iso, target="sda", bus="sata",
              boot=None)
    if spec.install_iso:
        _disk(devices, device="cdrom", fmt="raw", source=spec.install_iso, target="sdb",
              bus="sata", boot=1)
    if spec.drivers_iso and spec.os_type == "windows":
        _disk(devices, device="cdrom", fmt="raw", source=spec.drivers_iso, target="sdc",
              bus="sata", boot=None)
    devices.append(media_cdrom(spec.media_iso))
    if virtio_capable(spec):
        _sub(devices, "controller", type="scsi", index="0", model="virtio-scsi")
        for extra in spec.extra_disks:
            devices.append(extra_disk(extra))


def media_cdrom(iso: str | None) -> ET.Element:
    """The media CD-ROM drive (``sde``), with ``iso`` in it or empty; also the XML of a live
    medium change."""
    disk = ET.Element("disk", type="file", device="cdrom")
    _sub(disk, "driver", name="qemu", type="raw")
    if iso is not None:
        _sub(disk, "source", file=iso)
    _sub(disk, "target", dev=MEDIA_TARGET, bus="sata")
    _sub(disk, "readonly")
    return disk


def extra_disk(extra: ExtraDiskSpec) -> ET.Element:
    """An extra disk's element; also the XML of its live attach and detach."""
    disk = ET.Element("disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type="qcow2")
    _sub(disk, "source", file=extra.path)
    _sub(disk, "target", dev=extra.target, bus="scsi")
    _sub(disk, "address", type="drive", controller="0", bus="0", target="0", unit=str(extra.unit))
    return disk


def device_xml(element: ET.Element) -> str:
    """One device element as libvirt's device APIs take it."""
    return ET.tostring(element, encoding="unicode")


def _cpu_and_memory(root: ET.Element, spec: DomainSpec) -> None:
    """vCPUs and memory, with their hot-plug ceilings when above the current figures."""
    max_vcpus = max(spec.max_vcpus, spec.vcpus)
    if spec.max_memory_mib > spec.memory_mib:
        _sub(root, "maxMemory", str(spec.max_memory_mib), slots=str(MEMORY_SLOTS), unit="MiB")
    _sub(root, "memory", str(spec.memory_mib), unit="MiB")
    if max_vcpus > spec.vcpus:
        _sub(root, "vcpu", str(max_vcpus), current=str(spec.vcpus))
    else:
        _sub(root, "vcpu", str(spec.vcpus))


def _numa(cpu: ET.Element, spec: DomainSpec) -> None:
    """Memory hot-plug needs a NUMA cell for the DIMMs: one, holding every vCPU."""
    if spec.max_memory_mib <= spec.memory_mib:
        return
    numa = _sub(cpu, "numa")
    _sub(numa, "cell", id="0", cpus=f"0-{max(spec.max_vcpus, spec.vcpus) - 1}",
         memory=str(spec.memory_mib), unit="MiB")


def _consoles(devices: ET.Element, spec: DomainSpec) -> None:
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "log", file=spec.serial_log, append="on")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    graphics = _sub(devices, "graphics", type="vnc", port="-1", autoport="yes",
                    listen=spec.console_host)
    if spec.vnc_password:
        graphics.set("passwd", spec.vnc_password)
    channel = _sub(devices, "channel", type="unix")
    _sub(channel, "target", type="virtio", name=GUEST_AGENT_CHANNEL)
    video = _sub(devices, "video")
    _sub(video, "model", type="vga")
    _sub(devices, "memballoon", model="none")


def _interface(devices: ET.Element, nic: NicSpec) -> None:
    kind = "bridge" if nic.mode == "bridge" else "network"
    interface = _sub(devices, "interface", type=kind)
    _sub(interface, "mac", address=nic.mac)
    _sub(interface, "source", **{kind: nic.source})
    _sub(interface, "model", type=nic.model)


def restricted(nic: NicSpec) -> bool:
    """True unless a ``user`` NIC was explicitly given outbound access."""
    return not (nic.mode == "user" and nic.outbound)


def user_netdev_args(nic: NicSpec) -> list[str]:
    """QEMU arguments of a user-mode NIC (restricted unless opted out) with its forwards."""
    netdev = ["user", "id=net0"]
    if restricted(nic):
        netdev.append("restrict=on")
    netdev += [f"hostfwd=tcp:{nic.forward_host}:{f.host_port}-:{f.guest_port}"
               for f in nic.forwards]
    model = "virtio-net-pci" if nic.model == "virtio" else nic.model
    device = f"{model},netdev=net0,mac={nic.mac},bus=pcie.0,addr={NIC_PCI_ADDRESS}"
    return ["-netdev", ",".join(netdev), "-device", device]


# Hyper-V enlightenments Windows uses (the set virt-install and Proxmox give Windows guests).
HYPERV_FEATURES = ("relaxed", "vapic", "spinlocks", "vpindex", "runtime", "synic", "stimer",
                   "reset", "frequencies")
# Under TCG QEMU refuses vpindex ("kernel doesn't allow setting HyperV VP_INDEX", measured on
# QEMU 7.2), and synic/stimer depend on it: the rest still helps Windows under emulation.
HYPERV_FEATURES_TCG = ("relaxed", "vapic", "spinlocks", "runtime", "reset", "frequencies")


def _windows_os(os_: ET.Element, spec: DomainSpec) -> None:
    # libvirt picks OVMF from /usr/share/qemu/firmware by these features (and makes the VM's
    # own NVRAM copy): no host path in the XML.
    os_.set("firmware", "efi")
    firmware = _sub(os_, "firmware")
    _sub(firmware, "feature", enabled="yes" if spec.secure_boot else "no", name="secure-boot")
    if spec.secure_boot:  # with Microsoft's keys enrolled, or Windows' boot loader is refused
        _sub(firmware, "feature", enabled="yes", name="enrolled-keys")


def _windows_features(features: ET.Element, spec: DomainSpec) -> None:
    hyperv = _sub(features, "hyperv", mode="custom")
    for name in HYPERV_FEATURES if spec.virt_type == "kvm" else HYPERV_FEATURES_TCG:
        if name == "spinlocks":
            _sub(hyperv, name, state="on", retries="8191")
        else:
            _sub(hyperv, name, state="on")
    if spec.secure_boot:  # Secure Boot firmware keeps its variables in SMM
        _sub(features, "smm", state="on")


def _clock(root: ET.Element, spec: DomainSpec) -> None:
    if spec.os_type != "windows":
        _sub(root, "clock", offset="utc")
        return
    clock = _sub(root, "clock", offset="localtime")
    _sub(clock, "timer", name="rtc", tickpolicy="catchup")
    _sub(clock, "timer", name="pit", tickpolicy="delay")
    _sub(clock, "timer", name="hpet", present="no")
    if spec.virt_type == "kvm":  # the Hyper-V reference clock needs KVM
        _sub(clock, "timer", name="hypervclock", present="yes")


def _windows_devices(devices: ET.Element) -> None:
    _sub(devices, "controller", type="usb", model="qemu-xhci")
    _sub(devices, "input", type="tablet", bus="usb")
    tpm = _sub(devices, "tpm", model="tpm-crb")
    _sub(tpm, "backend", type="emulator", version="2.0")


def render(spec: DomainSpec) -> str:
    """The domain XML of ``spec`` (deterministic: same spec, same bytes)."""
    windows = spec.os_type == "windows"
    root = ET.Element("domain", type=spec.virt_type)
    _sub(root, "name", spec.name)
    _sub(root, "uuid", spec.uuid)
    _cpu_and_memory(root, spec)
    os_ = _sub(root, "os")
    _sub(os_, "type", "hvm", arch="x86_64", machine="q35")
    if windows:
        _windows_os(os_, spec)
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if windows:
        _windows_features(features, spec)
    if spec.virt_type == "kvm":
        _numa(_sub(root, "cpu", mode="host-passthrough"), spec)
    elif spec.max_memory_mib > spec.memory_mib:
        _numa(_sub(root, "cpu"), spec)
    _clock(root, spec)
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")
    devices = _sub(root, "devices")
    _storage(devices, spec)
    _consoles(devices, spec)
    if windows:
        _windows_devices(devices)
    if spec.nic.mode in {"bridge", "network"}:
        _interface(devices, spec.nic)
    elif spec.nic.mode in {"user", "isolated"}:
        commandline = _sub(root, f"{{{QEMU_NS}}}commandline")
        for arg in user_netdev_args(spec.nic):
            _sub(commandline, f"{{{QEMU_NS}}}arg", value=arg)
    ET.register_namespace("qemu", QEMU_NS)
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"
