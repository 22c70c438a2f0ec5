"""The QEMU guest agent, followed (docs/guest-agent.md): ``guest.agent``, OS, users, file systems
and addresses on the VM record, refreshed when the agent connects and every
``LQ_GUEST_AGENT_REFRESH_S``; an address change is a ``vm.addresses_changed`` event.

libvirt tells when an agent (dis)connects (``VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE``) and relays
its commands (``qemuAgentCommand``, ``guestInfo``, ``interfaceAddresses(..._SRC_AGENT)``); every
call blocks, so each runs in a worker thread (``LibvirtHost.agent_call``). The periodic pass also
reads the channel's state from the domain XML, so an event missed (agent restarted while the
node was away) is caught up.

The guest answers these, so they are hostile input: counts and string lengths are bounded.
Windows VMs have no cloud-init signal on the serial console: their agent connecting makes them
``ready`` (docs/windows.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import libvirt
import libvirt_qemu
import msgspec
import structlog

from limiquantix.common.events import VmAddressesChanged, VmAgentChanged
from limiquantix.common.guest_rpc import AgentUnavailable, GuestAgentError, GuestFileNotFound
from limiquantix.common.model import utcnow
from limiquantix.common.vms import (
    GuestAddress,
    GuestAgentInfo,
    GuestFilesystem,
    GuestInfo,
    GuestOsInfo,
    VmRecord,
    VmState,
)
from limiquantix.node_agent import guest_phases
from limiquantix.node_agent.domain_xml import GUEST_AGENT_CHANNEL

if TYPE_CHECKING:  # context.py imports guest_watch.py, which imports this module
    from limiquantix.node_agent.context import AgentContext

log = structlog.get_logger()

COMMAND_TIMEOUT_S = 10  # one agent command: info, guest-exec and its status polls
# One file chunk or password change: the agent parses a chunk's JSON and base64 in the guest
# (slow under TCG on a busy host); below the gateway's wait for these (common.guest_rpc).
SLOW_COMMAND_TIMEOUT_S = 45
# What a refresh asks libvirt's guestInfo for (not disks, interfaces, time zone: cost, unused).
GUEST_INFO_TYPES = (libvirt.VIR_DOMAIN_GUEST_INFO_USERS | libvirt.VIR_DOMAIN_GUEST_INFO_OS
                    | libvirt.VIR_DOMAIN_GUEST_INFO_HOSTNAME
                    | libvirt.VIR_DOMAIN_GUEST_INFO_FILESYSTEM)
MAX_TEXT = 256
MAX_USERS = 32
MAX_FILESYSTEMS = 64
MAX_ADDRESSES = 32
MAX_COMMANDS = 256
_SOURCE_ORDER = {"serial": 0, "agent": 1}  # ip_addresses: the serial log's first
# libvirt's codes for "no agent to talk to" (not connected, not answering, not supported by the
# driver, domain not running).
_NO_AGENT = frozenset({libvirt.VIR_ERR_AGENT_UNRESPONSIVE, libvirt.VIR_ERR_AGENT_UNSYNCED,
                       libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_INVALID})


def _text(value: object) -> str:
    return str(value)[:MAX_TEXT] if value is not None else ""


def agent_error(exc: libvirt.libvirtError, execute: str) -> Exception:
    """The typed error of a failed agent command."""
    message = exc.get_error_message() or str(exc)
    if exc.get_error_code() in _NO_AGENT:
        return AgentUnavailable(f"guest agent unavailable: {message}", command=execute)
    if "No such file" in message or "not found" in message.lower():
        return GuestFileNotFound(f"guest agent: {message}", command=execute)
    return GuestAgentError(f"guest agent {execute} failed: {message}", command=execute)


def agent_command(dom: libvirt.virDomain, execute: str, arguments: dict[str, Any] | None = None,
                  *, timeout_s: int = COMMAND_TIMEOUT_S) -> Any:
    """Run one agent command (blocking: call in a worker thread); its ``return`` value."""
    body: dict[str, Any] = {"execute": execute}
    if arguments:
        body["arguments"] = arguments
    try:
        raw = libvirt_qemu.qemuAgentCommand(dom, json.dumps(body), timeout_s, 0)
    except libvirt.libvirtError as exc:
        raise agent_error(exc, execute) from None
    try:
        return json.loads(raw).get("return")
    except (ValueError, AttributeError):
        raise GuestAgentError(f"guest agent {execute}: unreadable answer") from None


def channel_connected(xml: str) -> bool:
    """Whether the domain XML shows the agent channel connected (libvirt's ``state``)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return False
    for target in root.iterfind("./devices/channel/target"):
        if target.get("name") == GUEST_AGENT_CHANNEL:
            return target.get("state") == "connected"
    return False


@dataclass
class AgentReport:
    """What one refresh read from the agent."""

    connected: bool
    version: str = ""
    commands: tuple[str, ...] = ()
    os: GuestOsInfo | None = None
    users: tuple[str, ...] = ()
    filesystems: tuple[GuestFilesystem, ...] = ()
    addresses: tuple[GuestAddress, ...] = ()
    problems: list[str] = field(default_factory=list)
    stale: bool = False  # connected, but nothing could be read this time: change nothing


def parse_guest_info(info: dict[str, Any]) -> tuple[GuestOsInfo, tuple[str, ...],
                                                    tuple[GuestFilesystem, ...]]:
    """OS, users and file systems out of libvirt's ``guestInfo`` typed parameters."""
    os_info = GuestOsInfo(
        name=_text(info.get("os.pretty-name") or info.get("os.name")),
        version=_text(info.get("os.version")), kernel=_text(info.get("os.kernel-release")),
        hostname=_text(info.get("hostname")))
    users = tuple(_text(info.get(f"user.{i}.name"))
                  for i in range(min(int(info.get("user.count", 0)), MAX_USERS)))
    filesystems = []
    for i in range(min(int(info.get("fs.count", 0)), MAX_FILESYSTEMS)):
        total, used = info.get(f"fs.{i}.total-bytes"), info.get(f"fs.{i}.used-bytes")
        filesystems.append(GuestFilesystem(
            mount=_text(info.get(f"fs.{i}.mountpoint")), type=_text(info.get(f"fs.{i}.fstype")),
            total_bytes=int(total) if total is not None else None,
            used_bytes=int(used) if used is not None else None))
    return os_info, tuple(dict.fromkeys(users)), tuple(filesystems)


def _global(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def parse_interfaces(interfaces: dict[str, Any]) -> tuple[GuestAddress, ...]:
    """Global addresses out of ``interfaceAddresses(..._SRC_AGENT)`` (loopback, link-local out)."""
    found: list[GuestAddress] = []
    for name, interface in sorted(interfaces.items()):
        for entry in (interface or {}).get("addrs") or ():
            address = _text(entry.get("addr"))
            if _global(address) and len(found) < MAX_ADDRESSES:
                prefix = entry.get("prefix")
                found.append(GuestAddress(address=address, interface=_text(name), source="agent",
                                          prefix=int(prefix) if prefix is not None else None))
    return tuple(found)


def read_report(dom: libvirt.virDomain) -> AgentReport:
    """Everything the agent says about the guest (blocking: a worker thread). A part the agent
    does not support is left empty, the rest still read."""
    if not dom.isActive() or not channel_connected(dom.XMLDesc(0)):
        return AgentReport(connected=False)
    report = AgentReport(connected=True)
    try:
        info = agent_command(dom, "guest-info") or {}
        report.version = _text(info.get("version"))
        report.commands = tuple(_text(c.get("name")) for c in info.get("supported_commands", ())
                                if c.get("enabled"))[:MAX_COMMANDS]
    except AgentUnavailable as exc:
        # Connected but not answering in time (busy with a file chunk, or still starting):
        # no new reading, and no reason to call it disconnected.
        return AgentReport(connected=True, stale=True, problems=[str(exc)])
    except GuestAgentError as exc:
        report.problems.append(str(exc))
    try:
        report.os, report.users, report.filesystems = parse_guest_info(
            dom.guestInfo(GUEST_INFO_TYPES, 0))
    except libvirt.libvirtError as exc:
        report.problems.append(f"guestInfo: {exc.get_error_message()}")
    try:
        report.addresses = parse_interfaces(dom.interfaceAddresses(
            libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, 0))
    except libvirt.libvirtError as exc:
        report.problems.append(f"interfaceAddresses: {exc.get_error_message()}")
    return report


def merge_addresses(current: tuple[GuestAddress, ...], source: str,
                    new: tuple[GuestAddress, ...]) -> tuple[GuestAddress, ...]:
    """``current`` with ``source``'s addresses replaced by ``new`` (others' kept, no repeats of
    the same address from the same source). Serial first, then agent, each in its own order:
    the same readings give the same list whichever source spoke last."""
    kept = [a for a in current if a.source != source]
    seen = {(a.address, a.source) for a in kept}
    for address in new:
        if (address.address, address.source) not in seen:
            seen.add((address.address, address.source))
            kept.append(address)
    return tuple(sorted(kept, key=lambda a: _SOURCE_ORDER.get(a.source, 2)))  # stable


def address_list(details: tuple[GuestAddress, ...]) -> tuple[str, ...]:
    """The plain, unique addresses (``guest.addresses``) of the detailed list."""
    return tuple(dict.fromkeys(a.address for a in details))


def apply_report(guest: GuestInfo, report: AgentReport) -> GuestInfo:
    """``guest`` updated with ``report`` (a disconnected agent: only ``connected`` changes)."""
    if not report.connected:
        return msgspec.structs.replace(
            guest, agent=msgspec.structs.replace(guest.agent, connected=False))
    details = merge_addresses(guest.ip_addresses, "agent", report.addresses)
    return msgspec.structs.replace(
        guest, agent=GuestAgentInfo(connected=True, version=report.version,
                                    commands=report.commands),
        os=report.os or guest.os, users=report.users, filesystems=report.filesystems,
        ip_addresses=details, addresses=address_list(details), info_at=utcnow())


_UP = frozenset({VmState.RUNNING, VmState.READY})


class GuestAgents:
    """Follows every VM's guest agent on this node (one task for events, one periodic)."""

    def __init__(self, ctx: AgentContext, vm_for_domain: Any, records: Any) -> None:
        self._ctx = ctx
        self._vm_for_domain = vm_for_domain  # NodeRecords.vm_for_domain
        self._records = records  # () -> the node's records
        self._locks: dict[str, asyncio.Lock] = {}

    async def follow_events(self) -> None:
        """Until cancelled: refresh a VM whenever libvirt says its agent (dis)connected."""
        while True:
            event = await self._ctx.host.agent_events.get()
            vm_id = self._vm_for_domain(event.uuid)
            if vm_id is None:
                continue
            log.info("guest agent " + ("connected" if event.connected else "disconnected"),
                     vm_id=vm_id)
            await self._safe_refresh(vm_id)

    async def run_periodic(self) -> None:
        """Until cancelled: refresh every running VM each ``LQ_GUEST_AGENT_REFRESH_S``."""
        interval = self._ctx.settings.guest_agent_refresh_s
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            for record in self._records():
                if record.state in _UP:
                    await self._safe_refresh(record.id)

    async def _safe_refresh(self, vm_id: str) -> None:
        try:
            await self.refresh(vm_id)
        except Exception:
            log.exception("guest agent refresh failed", vm_id=vm_id)

    async def refresh(self, vm_id: str) -> VmRecord | None:
        """Read the agent now and record what changed (one VM at a time)."""
        if self._ctx.host.is_test_driver:
            return None  # the test driver has no guest agent (nor any guest)
        lock = self._locks.setdefault(vm_id, asyncio.Lock())
        async with lock:
            report = await self._ctx.host.agent_call(
                "guest agent info", self._ctx.domain_uuid(vm_id), read_report)
            if report is None:
                return None
            if report.problems:
                log.info("guest agent answered in part", vm_id=vm_id, problems=report.problems)
            return await self.record(vm_id, report)

    async def record(self, vm_id: str, report: AgentReport) -> VmRecord | None:
        """Write what ``report`` changed on the record, then announce it (events, phases)."""
        before: list[GuestInfo] = []

        def change(record: VmRecord) -> VmRecord | None:
            if report.stale or (record.state not in _UP and report.connected):
                return None
            guest = apply_report(record.guest, report)
            if _same(guest, record.guest):
                return None
            before[:] = [record.guest]
            return msgspec.structs.replace(record, guest=guest)

        updated = await self._ctx.recorder.patch(vm_id, change)
        if updated is None or not before:
            return updated
        await self._announce(updated, before[0])
        return updated

    async def _announce(self, record: VmRecord, old: GuestInfo) -> None:
        new = record.guest
        publish = self._ctx.recorder.publish
        if new.agent.connected != old.agent.connected:
            await publish(VmAgentChanged(vm_id=record.id, name=record.name, node=record.node,
                                         connected=new.agent.connected,
                                         version=new.agent.version))
        if set(new.addresses) != set(old.addresses) and old.addresses:
            log.info("guest addresses changed", vm_id=record.id, addresses=list(new.addresses),
                     previous=list(old.addresses))
            await publish(VmAddressesChanged(vm_id=record.id, name=record.name,
                                             node=record.node, addresses=new.addresses,
                                             previous=old.addresses))
        if new.addresses and "network" not in new.phases:
            await guest_phases.reach(self._ctx.recorder, record.id, "network")
        if new.agent.connected and record.os_type == "windows":
            await self._windows_ready(record)

    async def _windows_ready(self, record: VmRecord) -> None:
        """A Windows guest has no cloud-init signal: its agent answering is readiness."""
        now = utcnow()

        def change(r: VmRecord) -> VmRecord:
            guest = guest_phases.with_phase(r.guest, "ready", now) or r.guest
            boot = guest_phases.elapsed_s(guest, now)
            return msgspec.structs.replace(r, guest=msgspec.structs.replace(
                guest, ready_at=guest.ready_at or now, boot_seconds=guest.boot_seconds or boot))

        updated = await self._ctx.recorder.transition(
            record.id, VmState.READY, reason="guest agent connected", change=change,
            only_from=frozenset({VmState.RUNNING}))
        if updated is not None and updated.guest.phases.get("ready") == now:
            await self._ctx.recorder.publish(guest_phases.phase_event(updated, "ready"))


def _same(a: GuestInfo, b: GuestInfo) -> bool:
    """Equal but for the time of the reading."""
    return msgspec.structs.replace(a, info_at=None) == msgspec.structs.replace(b, info_at=None)
