"""What a domain's libvirt state means for its VM record (a pure mapping, unit-tested)."""

from __future__ import annotations

import libvirt

from limiquantix.common.vms import VmRecord, VmState
from limiquantix.node_agent.libvirt_host import DomainInfo

_RUNNING = frozenset({libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED})


def observed_state(info: DomainInfo | None, record: VmRecord) -> VmState | None:
    """The state the record should show for this domain; None when it cannot tell."""
    if info is None:
        return None
    if info.state in _RUNNING:
        # running and ready are the same to libvirt: keep the finer state the record knows
        return VmState.READY if record.state == VmState.READY else VmState.RUNNING
    if info.state in (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PMSUSPENDED):
        return VmState.PAUSED
    if info.state == libvirt.VIR_DOMAIN_CRASHED:
        return VmState.ERROR
    if info.state == libvirt.VIR_DOMAIN_SHUTOFF:
        crashed = info.reason == libvirt.VIR_DOMAIN_SHUTOFF_CRASHED
        return VmState.ERROR if crashed else VmState.STOPPED
    return None  # shutting down, no state: wait for the next look


def crashed(info: DomainInfo) -> bool:
    return bool(info.state == libvirt.VIR_DOMAIN_CRASHED or (
        info.state == libvirt.VIR_DOMAIN_SHUTOFF
        and info.reason == libvirt.VIR_DOMAIN_SHUTOFF_CRASHED))
