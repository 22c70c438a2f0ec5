"""The node's libvirt connection: every blocking call in a worker thread, events into a queue.

Domains are addressed by UUID (= the VM id), never by name. libvirt's lifecycle events
(delivered on the asyncio loop, see libvirt_events.py) are queued as :class:`LifecycleEvent`;
the agent treats them as hints to re-read the domain's real state (events for our own calls
arrive too, and may arrive late).

The connection is supervised (issue 11): libvirt's close callback (a remote connection's socket
closed, e.g. libvirtd restarted), its keepalive (5 s x 3 unanswered: a hung libvirtd) and a
liveness poll (``isAlive``; the only signal the in-process test driver gives) mark it lost; it
is then opened again with the shared backoff (``common.retry``), lifecycle events registered
again, and ``supervise``'s caller reconciles what happened meanwhile. While it is down the
node's heartbeat carries the ``libvirt_disconnected`` warning, and every call waits for the
reconnection up to ``LQ_TRANSIENT_RETRY_S``, then fails with ``libvirt_unavailable`` (retryable);
a call the loss interrupted is made again after the reconnection (every operation here is
idempotent: define redefines, start/stop look at the state first).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from xml.sax.saxutils import quoteattr

import libvirt
import structlog

from limiquantix.common.nodes import NodeWarning
from limiquantix.common.retry import Backoff
from limiquantix.node_agent import libvirt_events
from limiquantix.node_agent.errors import LibvirtFailed

log = structlog.get_logger()

T = TypeVar("T")

DRAIN_TIMEOUT_S = 2.0
KEEPALIVE_INTERVAL_S = 5  # libvirt pings an idle connection this often ...
KEEPALIVE_COUNT = 3  # ... and closes it after this many unanswered pings
LIVENESS_POLL_S = 2.0
# A failed call on a connection in this state, or one isAlive() denies, lost the connection.
CONNECTION_ERRORS = frozenset({libvirt.VIR_ERR_INVALID_CONN, libvirt.VIR_ERR_NO_CONNECT})

# Flags for undefine: remove the domain's NVRAM, managed save image and snapshot metadata too.
UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
)


def domain_uuid(vm_id: str) -> str:
    """The domain UUID of a VM: its id when that is a UUID, else a UUID derived from it."""
    try:
        return str(uuid.UUID(vm_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"limiquantix:vm:{vm_id}"))


@dataclass(frozen=True, slots=True)
class DomainInfo:
    uuid: str
    name: str
    state: int  # libvirt.VIR_DOMAIN_RUNNING, ...
    reason: int  # why it is in that state (e.g. VIR_DOMAIN_SHUTOFF_CRASHED)

    @property
    def active(self) -> bool:
        return bool(self.state not in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_NOSTATE))


@dataclass(frozen=True, slots=True)
class AgentEvent:
    """The QEMU guest agent of a domain connected or disconnected (its channel's state)."""

    uuid: str
    connected: bool


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    uuid: str
    name: str
    event: int  # libvirt.VIR_DOMAIN_EVENT_STARTED, ...
    detail: int


def _is_no_domain(exc: libvirt.libvirtError) -> bool:
    return bool(exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN)


class LibvirtUnavailable(LibvirtFailed):
    """The node has no connection to libvirt right now (libvirtd restarting or hung)."""

    code = "libvirt_unavailable"
    status = 503
    default_hint = ("The node lost its connection to libvirtd and keeps reconnecting; retry the "
                    "action once `lq node list` no longer shows libvirt_disconnected.")


class LibvirtHost:
    """One libvirt connection used by the whole agent (libvirt connections are thread-safe),
    re-opened when it is lost (see the module docstring)."""

    def __init__(self, uri: str, conn: libvirt.virConnect, *, retry_s: float = 120.0) -> None:
        self.uri = uri
        self._conn = conn
        self._retry_s = retry_s
        self.events: asyncio.Queue[LifecycleEvent] = asyncio.Queue()
        self.agent_events: asyncio.Queue[AgentEvent] = asyncio.Queue()  # guest_agent.py
        self._callback_id: int | None = None
        self._agent_callback_id: int | None = None
        self._connected = asyncio.Event()
        self._connected.set()
        self._lost = asyncio.Event()
        self._lost_at = 0.0
        self._listeners: list[Callable[[], None]] = []
        self.reconnects = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, uri: str, *, retry_s: float = 120.0) -> AsyncIterator[LibvirtHost]:
        """Connect (register_event_loop first), watch lifecycle events, close on exit."""
        try:
            conn = await asyncio.to_thread(libvirt.open, uri)
        except libvirt.libvirtError as exc:
            raise LibvirtFailed(f"cannot connect to libvirt at {uri}: {exc}",
                                hint="Start libvirtd (scripts/libvirtd.sh) or fix LQ_LIBVIRT_URI.",
                                uri=uri) from None
        host = cls(uri, conn, retry_s=retry_s)
        host._watch(conn)
        try:
            yield host
        finally:
            # On the loop thread, so the handles it unregisters are gone before the drain.
            host._release(host._conn)
            impl = libvirt_events.current()
            if impl is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(impl.drain(), DRAIN_TIMEOUT_S)

    # -- the connection's life ------------------------------------------------------------
    def _watch(self, conn: libvirt.virConnect) -> None:
        """Lifecycle events, the close callback and keepalive on a new connection."""
        self._callback_id = conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None)
        with contextlib.suppress(libvirt.libvirtError):  # drivers without a guest agent
            self._agent_callback_id = conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, self._on_agent, None)
        with contextlib.suppress(libvirt.libvirtError):
            conn.registerCloseCallback(self._on_close, None)
        with contextlib.suppress(libvirt.libvirtError):  # local drivers have no keepalive
            conn.setKeepAlive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT)

    def _release(self, conn: libvirt.virConnect) -> None:
        """Let go of a connection, alive or not (best effort: a dead one refuses everything)."""
        with contextlib.suppress(libvirt.libvirtError):
            conn.unregisterCloseCallback()
        if self._callback_id is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.domainEventDeregisterAny(self._callback_id)
            self._callback_id = None
        if self._agent_callback_id is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.domainEventDeregisterAny(self._agent_callback_id)
            self._agent_callback_id = None
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()

    def _on_close(self, _conn: Any, reason: int, _opaque: Any) -> None:
        # Runs on the event loop (libvirtaio): libvirtd closed the socket or keepalive gave up.
        self._mark_lost(f"closed by libvirt (reason {reason})")

    def _mark_lost(self, why: str) -> None:
        if not self._connected.is_set():
            return
        log.warning("libvirt connection lost; reconnecting", uri=self.uri, why=why)
        self._connected.clear()
        self._lost_at = time.monotonic()
        self._lost.set()
        self._changed()

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (on the loop) whenever the connection is lost or back."""
        self._listeners.append(listener)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def warnings(self) -> tuple[NodeWarning, ...]:
        """What the heartbeat says about the connection now."""
        if self.connected:
            return ()
        down_s = time.monotonic() - self._lost_at
        return (NodeWarning(
            code="libvirt_disconnected",
            message=(f"the node lost its connection to libvirt ({self.uri}) {down_s:.0f} s ago "
                     "and keeps reconnecting; VM actions wait for it, then fail with "
                     "libvirt_unavailable"),
            hint="Check that libvirtd runs on the node (`bash scripts/libvirtd.sh`); the node "
                 "reconnects on its own."),)

    async def _alive(self) -> bool:
        conn = self._conn
        try:
            return bool(await asyncio.to_thread(conn.isAlive))
        except libvirt.libvirtError:
            return False

    async def supervise(self, on_reconnect: Callable[[], Awaitable[None]]) -> None:
        """Until cancelled: notice a lost connection, reopen it, then ``on_reconnect()``."""
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 a cancel that lands while wait_for
            # is timing out comes back as TimeoutError, which would be swallowed here.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LIVENESS_POLL_S):
                    await self._lost.wait()
            if not self._lost.is_set():
                if await self._alive():
                    continue
                self._mark_lost("the connection is no longer alive")
            await self._reconnect()
            try:
                await on_reconnect()
            except Exception:
                log.exception("reconciling after the libvirt reconnection failed")

    async def _reconnect(self) -> None:
        self._release(self._conn)
        attempt = 0
        for delay in Backoff().delays():
            attempt += 1
            try:
                conn = await asyncio.to_thread(libvirt.open, self.uri)
            except libvirt.libvirtError as exc:
                log.warning("libvirt reconnect failed; retrying", uri=self.uri, attempt=attempt,
                            retry_in_s=round(delay, 2), error=exc.get_error_message())
                await asyncio.sleep(delay)
                continue
            self._watch(conn)
            self._conn = conn
            self.reconnects += 1
            self._lost.clear()
            self._connected.set()
            log.info("libvirt connection re-established", uri=self.uri, attempts=attempt,
                     down_s=round(time.monotonic() - self._lost_at, 2))
            self._changed()
            return

    def _on_lifecycle(self, _conn: Any, dom: libvirt.virDomain, event: int, detail: int,
                      _opaque: Any) -> None:
        # Runs on the event loop (libvirtaio); UUIDString and name are local, no RPC.
        self.events.put_nowait(LifecycleEvent(dom.UUIDString(), dom.name(), event, detail))

    def _on_agent(self, _conn: Any, dom: libvirt.virDomain, state: int, _reason: int,
                  _opaque: Any) -> None:
        # Runs on the event loop (libvirtaio), like _on_lifecycle.
        connected = state == libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED
        self.agent_events.put_nowait(AgentEvent(dom.UUIDString(), connected))

    async def agent_call(self, what: str, dom_uuid: str,
                         op: Callable[[libvirt.virDomain], T]) -> T | None:
        """``op(domain)`` in a worker thread for the guest agent's work (guest_agent.py); None
        when no domain has this UUID. ``op`` turns the agent's own errors into typed ones
        itself (``_call`` keeps only libvirt's message)."""
        def run() -> T | None:
            dom = self._lookup(dom_uuid)
            return None if dom is None else op(dom)
        return await self._call(what, run, uuid=dom_uuid)

    @property
    def is_test_driver(self) -> bool:
        return self.uri.startswith("test:")

    async def _call(self, what: str, fn: Callable[[], T], **context: Any) -> T:
        """``fn`` in a worker thread; waits for (and survives) a reconnection, up to
        ``retry_s``. ``fn`` must read ``self._conn`` when it runs, not before."""
        give_up_at = time.monotonic() + self._retry_s
        while True:
            await self._wait_connected(what, give_up_at)
            try:
                return await asyncio.to_thread(fn)
            except libvirt.libvirtError as exc:
                if not await self._lost_by(exc):
                    raise LibvirtFailed(f"libvirt {what} failed: {exc.get_error_message()}",
                                        **context) from None
                self._mark_lost(f"{what}: {exc.get_error_message()}")

    async def _wait_connected(self, what: str, give_up_at: float) -> None:
        if self._connected.is_set():
            return
        try:
            await asyncio.wait_for(self._connected.wait(), max(0.0, give_up_at - time.monotonic()))
        except TimeoutError:
            raise LibvirtUnavailable(
                f"libvirt {what}: the node has had no connection to libvirt for "
                f"{time.monotonic() - self._lost_at:.0f} s", uri=self.uri) from None

    async def _lost_by(self, exc: libvirt.libvirtError) -> bool:
        """Did this error come from a lost connection (rather than from the operation)?"""
        return exc.get_error_code() in CONNECTION_ERRORS or not await self._alive()

    def _lookup(self, dom_uuid: str) -> libvirt.virDomain | None:
        try:
            return self._conn.lookupByUUIDString(dom_uuid)
        except libvirt.libvirtError as exc:
            if _is_no_domain(exc):
                return None
            raise

    def _info(self, dom: libvirt.virDomain) -> DomainInfo:
        state, reason = dom.state()
        return DomainInfo(dom.UUIDString(), dom.name(), state, reason)

    async def info(self, dom_uuid: str) -> DomainInfo | None:
        """The domain's state, or None when no domain has this UUID."""
        def run() -> DomainInfo | None:
            dom = self._lookup(dom_uuid)
            return None if dom is None else self._info(dom)
        return await self._call("state", run, uuid=dom_uuid)

    async def list_domains(self) -> list[DomainInfo]:
        """Every domain libvirt knows (active or not)."""
        def run() -> list[DomainInfo]:
            infos = []
            for dom in self._conn.listAllDomains():
                try:
                    infos.append(self._info(dom))
                except libvirt.libvirtError as exc:
                    if not _is_no_domain(exc):  # undefined while we listed: skip it
                        raise
            return infos
        return await self._call("list", run)

    async def define(self, xml: str) -> None:
        """Define (or redefine) a domain from its XML."""
        await self._call("define", lambda: self._conn.defineXML(xml))

    async def _on_domain(self, what: str, dom_uuid: str,
                         op: Callable[[libvirt.virDomain], object]) -> bool:
        """Run ``op`` on the domain; False when there is no such domain."""
        def run() -> bool:
            dom = self._lookup(dom_uuid)
            if dom is None:
                return False
            op(dom)
            return True
        return await self._call(what, run, uuid=dom_uuid)

    async def with_domain(self, what: str, dom_uuid: str,
                          op: Callable[[libvirt.virDomain], T]) -> T | None:
        """``op(domain)`` in a worker thread, like every call here (a lost connection waited
        for); None when there is no such domain. For modules with their own libvirt work
        (devices.py, snapshots.py, clone.py): ``op`` must be idempotent, it may run again after
        a reconnection."""
        def run() -> T | None:
            dom = self._lookup(dom_uuid)
            return None if dom is None else op(dom)
        return await self._call(what, run, uuid=dom_uuid)

    async def start(self, dom_uuid: str) -> bool:
        """Start the domain unless it already runs (resume it when paused)."""
        def op(dom: libvirt.virDomain) -> None:
            state, _ = dom.state()
            if state == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
            elif not dom.isActive():
                dom.create()
        return await self._on_domain("start", dom_uuid, op)

    async def shutdown(self, dom_uuid: str) -> bool:
        """Ask the guest to power off (ACPI); returns at once."""
        def op(dom: libvirt.virDomain) -> None:
            if dom.isActive():
                dom.shutdown()
        return await self._on_domain("shutdown", dom_uuid, op)

    async def destroy(self, dom_uuid: str) -> bool:
        """Power the domain off at once (no error when it is not running)."""
        def op(dom: libvirt.virDomain) -> None:
            if dom.isActive():
                dom.destroy()
        return await self._on_domain("destroy", dom_uuid, op)

    async def reboot(self, dom_uuid: str) -> bool:
        return await self._on_domain("reboot", dom_uuid, lambda dom: dom.reboot(0))

    async def suspend(self, dom_uuid: str) -> bool:
        def op(dom: libvirt.virDomain) -> None:
            if dom.state()[0] != libvirt.VIR_DOMAIN_PAUSED:
                dom.suspend()
        return await self._on_domain("suspend", dom_uuid, op)

    async def resume(self, dom_uuid: str) -> bool:
        def op(dom: libvirt.virDomain) -> None:
            if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
        return await self._on_domain("resume", dom_uuid, op)

    async def undefine(self, dom_uuid: str) -> bool:
        """Remove the domain's definition (with its NVRAM); False when it was not defined."""
        def op(dom: libvirt.virDomain) -> None:
            try:
                dom.undefineFlags(UNDEFINE_FLAGS)
            except libvirt.libvirtError as exc:
                # Drivers without NVRAM/snapshot support reject the flags: undefine plainly.
                if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT,
                                                libvirt.VIR_ERR_INVALID_ARG,
                                                libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED):
                    raise
                dom.undefine()
        return await self._on_domain("undefine", dom_uuid, op)

    async def vnc_display(self, dom_uuid: str) -> tuple[int, bool] | None:
        """The VNC port QEMU really listens on (autoport) and whether the display has a
        password, or None when not known."""
        def run() -> str | None:
            dom = self._lookup(dom_uuid)
            # SECURE: only then does libvirt show the passwd attribute (we only test it is set)
            return None if dom is None else dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
        xml = await self._call("XMLDesc", run, uuid=dom_uuid)
        if xml is None:
            return None
        graphics = ET.fromstring(xml).find("./devices/graphics[@type='vnc']")
        if graphics is None or int(graphics.get("port", "-1")) <= 0:
            return None
        return int(graphics.get("port", "-1")), bool(graphics.get("passwd"))

    async def change_cdrom(self, dom_uuid: str, target: str, source: str) -> bool:
        """Eject and re-insert a running domain's cdrom, so QEMU opens the (replaced) file.

        Re-inserting the same path alone is a no-op for libvirt; QEMU would keep reading the
        old, renamed-over file until its process ends.
        """
        def disk(inner: str) -> str:
            return (f"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>{inner}"
                    f"<target dev={quoteattr(target)} bus='sata'/><readonly/></disk>")

        def op(dom: libvirt.virDomain) -> None:
            if dom.isActive():
                dom.updateDeviceFlags(disk(""), libvirt.VIR_DOMAIN_AFFECT_LIVE)
                dom.updateDeviceFlags(disk(f"<source file={quoteattr(source)}/>"),
                                      libvirt.VIR_DOMAIN_AFFECT_LIVE)
        return await self._on_domain("change-media", dom_uuid, op)

    async def domain_capabilities(self) -> str:
        """libvirt's domain capabilities XML (served from its QEMU capability cache)."""
        return await self._call("getDomainCapabilities",
                                lambda: self._conn.getDomainCapabilities())

    async def capacity(self) -> tuple[int, int]:
        """(CPUs, memory MiB) libvirt reports for this host."""
        info = await self._call("getInfo", lambda: self._conn.getInfo())
        return int(info[2]), int(info[1])
