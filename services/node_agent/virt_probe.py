"""Which libvirt domain type this node uses: ``test``, ``kvm`` or ``qemu`` (TCG).

KVM is chosen only where it can really boot Linux: ``/dev/kvm`` must open read-write, and the
module must not be kvm-pvm (``/sys/module/kvm_pvm``), whose guests run SeaBIOS but hang in the
64-bit Linux decompressor (see FIELD-NOTES). Everything else runs under TCG.
"""

from __future__ import annotations

import os
from pathlib import Path

from limiquantix.common.settings import Settings
from limiquantix.node_agent.domain_xml import VirtType

KVM_DEVICE = Path("/dev/kvm")
KVM_PVM_MODULE = Path("/sys/module/kvm_pvm")


def is_test_uri(uri: str) -> bool:
    """True for libvirt's in-process test driver (``test:///default``)."""
    return uri.startswith("test:")


def kvm_usable(device: Path = KVM_DEVICE, pvm_module: Path = KVM_PVM_MODULE) -> bool:
    """True when /dev/kvm opens read-write and is not kvm-pvm."""
    if pvm_module.exists():
        return False
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def virt_type(settings: Settings) -> VirtType:
    """The domain type for this node's settings (``virt_type`` auto|kvm|qemu)."""
    if is_test_uri(settings.libvirt_uri):
        return "test"
    if settings.virt_type == "kvm":
        return "kvm"
    if settings.virt_type == "qemu":
        return "qemu"
    return "kvm" if kvm_usable() else "qemu"
