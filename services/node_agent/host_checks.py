"""Start-up checks of this host that explain a slow or broken node before a user meets it.

Each finding is a ``NodeWarning`` on the node record (``lq node list`` / the web UI show them):

- ``kvm_not_accessible``: ``/dev/kvm`` exists but libvirt's QEMU user cannot open it read-write.
  On a host without udev the kernel leaves it ``root:root 0600``; libvirt then throws its QEMU
  capability cache away on every call and each define re-probes QEMU (~48 s instead of ~30 ms).
- ``capabilities_reprobed``: two capability queries in a row are both slow, so libvirt re-probes
  QEMU on every call, whatever the cause; every create pays that time.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import time
from pathlib import Path

import structlog

from limiquantix.common.nodes import NodeWarning
from limiquantix.node_agent.libvirt_host import LibvirtHost

log = structlog.get_logger()

KVM_DEVICE = Path("/dev/kvm")
QEMU_USER = "libvirt-qemu"  # Debian's; libvirt runs QEMU as this user
SLOW_CAPABILITIES_S = 1.0
FIX_HINT = ("Run `bash scripts/libvirtd.sh` as root (it applies what Debian's udev rule does: "
            "`chgrp kvm /dev/kvm; chmod 660 /dev/kvm`), then restart the node agent.")


def _can_open_rw(st: os.stat_result, uid: int, gids: set[int]) -> bool:
    """What the kernel's DAC check would say for a read-write open (no ACLs, not root)."""
    mode = st.st_mode
    if st.st_uid == uid:
        return bool(mode & stat.S_IRUSR and mode & stat.S_IWUSR)
    if st.st_gid in gids:
        return bool(mode & stat.S_IRGRP and mode & stat.S_IWGRP)
    return bool(mode & stat.S_IROTH and mode & stat.S_IWOTH)


def kvm_access_warning(device: Path = KVM_DEVICE, user: str = QEMU_USER) -> NodeWarning | None:
    """A warning when ``device`` exists and ``user`` cannot open it read-write."""
    try:
        st = device.stat()
        account = pwd.getpwnam(user)
    except (OSError, KeyError):
        return None  # no KVM device, or no QEMU user: nothing libvirt would trip over
    gids = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    if _can_open_rw(st, account.pw_uid, gids):
        return None
    owner = f"{_user_name(st.st_uid)}:{_group_name(st.st_gid)}"
    return NodeWarning(
        code="kvm_not_accessible",
        message=(f"{device} is {owner} {stat.S_IMODE(st.st_mode):04o}: libvirt's QEMU user "
                 f"{user!r} cannot open it, so libvirt re-probes QEMU on every call and each "
                 "VM create waits tens of seconds"),
        hint=FIX_HINT)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


async def capabilities_warning(host: LibvirtHost) -> NodeWarning | None:
    """A warning when two capability queries in a row are both slow (no cache kept)."""
    timings: list[float] = []
    for _ in range(2):  # the first may be libvirtd's first probe since it started: slow once
        started = time.monotonic()
        await host.domain_capabilities()
        timings.append(time.monotonic() - started)
        if timings[-1] < SLOW_CAPABILITIES_S:
            log.info("libvirt capability queries", seconds=[round(t, 3) for t in timings])
            return None
    return NodeWarning(
        code="capabilities_reprobed",
        message=(f"libvirt took {timings[0]:.1f} s and {timings[1]:.1f} s for two capability "
                 "queries in a row: it re-probes QEMU on every call, and every VM create "
                 "waits as long"),
        hint=FIX_HINT)


async def host_warnings(host: LibvirtHost) -> tuple[NodeWarning, ...]:
    """Every finding about this host (none on libvirt's test driver)."""
    if host.is_test_driver:
        return ()
    # With /dev/kvm out of reach the timed queries would each wait out a re-probe (~48 s):
    # the cause is known, so they are skipped and the node starts at once.
    found = kvm_access_warning() or await capabilities_warning(host)
    warnings = (found,) if found is not None else ()
    for warning in warnings:
        log.warning("host check", code=warning.code, problem=warning.message, fix=warning.hint)
    return warnings
