"""One console session from ticket to close: checks, VNC connection, pipe, lifecycle, audit.

Order of the checks on ``GET /v1/console/ws`` (every refusal happens before the upgrade, as a
problem+json response): a WebSocket upgrade at all (400; a plain GET, e.g. a link prefetch, must
not burn a ticket), the Origin (403 ``console_origin_rejected``; checked before the ticket so a
foreign page cannot burn one), the ticket (403 ``console_ticket_invalid`` /
``console_ticket_expired``, consumed by compare-and-set), the VM (404 ``vm_not_found``, 409
``console_unavailable`` when it is not running or has no VNC display). After the upgrade, a VNC
connection failure, a VM that stops or is deleted, closes with 1011 and the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Iterator
from datetime import datetime

import structlog
from aiohttp import web
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from limiquantix.api import app_keys, metrics
from limiquantix.api.auth import principal_of
from limiquantix.api.console.errors import ConsoleUnavailable, OriginRejected
from limiquantix.api.console.origin import origin_allowed, parse_allowed
from limiquantix.api.console.proxy import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    ConsolePipe,
    PipeResult,
    clip_reason,
)
from limiquantix.api.console.tickets import ConsoleTicket, TicketResponse, TicketStore, ws_url
from limiquantix.api.console.vm_watch import VmWatch
from limiquantix.api.console.vnc_handshake import VncHandshakeFailed
from limiquantix.api.errors import VmNotFound
from limiquantix.common import nats_client, subjects
from limiquantix.common.errors import NotFound
from limiquantix.common.events import ConsoleSessionEnded, ConsoleSessionStarted
from limiquantix.common.library_tokens import node_key
from limiquantix.common.model import utcnow
from limiquantix.common.publish import publish_event
from limiquantix.common.settings import Settings
from limiquantix.common.vm_store import VmStore
from limiquantix.common.vms import VmRecord, VmState, VncEndpoint
from limiquantix.common.vnc_auth import vnc_password

log = structlog.get_logger()

VNC_CONNECT_TIMEOUT_S = 5.0
# Detects browsers that vanished without a close frame (laptop lid shut); pings are not traffic.
WS_HEARTBEAT_S = 30.0
# The display exists while the domain runs; 'paused' still shows the frozen screen.
CONSOLE_STATES = frozenset({
    VmState.RUNNING, VmState.READY, VmState.PAUSED, VmState.STOPPING, VmState.REBOOTING,
})
# A noVNC message is small; bound one frame from the client well below aiohttp's 4 MiB default.
MAX_CLIENT_FRAME = 1 << 20
SHUTDOWN_WAIT_S = 5.0
_VM_REF = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def principal(request: web.Request) -> str:
    """Who asked, for the audit trail: the API token's name (``master`` for the master token)."""
    return principal_of(request).name


def own_origins(request: web.Request, settings: Settings) -> list[str]:
    """The origins a same-site page has: the request's scheme + Host, and the public URL."""
    origins = [f"{request.scheme}://{request.host}"]
    if settings.public_url:
        origins.append(settings.public_url)
    return origins


class ConsoleGateway:
    """The console state of one gateway process: tickets, open sessions, shutdown."""

    def __init__(
        self, *, settings: Settings, nc: Client, js: JetStreamContext, vm_store: VmStore,
        tickets_kv: KeyValue, vnc_key: bytes = b"",
    ) -> None:
        self.settings = settings
        self._vnc_key = vnc_key  # the node key: display passwords derive from it
        self._nc = nc
        self._js = js
        self._vms = vm_store
        self.tickets = TicketStore(tickets_kv, ttl_s=settings.console_ticket_ttl_s)
        self._allowed_origins = parse_allowed(settings.console_origins)
        self._pipes: set[ConsolePipe] = set()
        self._sessions = 0  # sessions between upgrade and their last audit event
        self._no_sessions = asyncio.Event()
        self._no_sessions.set()
        self._stopping = False

    @classmethod
    async def from_app(cls, app: web.Application) -> ConsoleGateway:
        """Built from the gateway's shared state (inside its cleanup context, NATS is up)."""
        js = app[app_keys.JETSTREAM]
        return cls(
            settings=app[app_keys.SETTINGS], nc=app[app_keys.NATS], js=js,
            vm_store=app[app_keys.VM_STORE],
            tickets_kv=await nats_client.bucket(js, subjects.CONSOLE_TOKENS_BUCKET),
            vnc_key=node_key(app[app_keys.LIBRARY_SECRET]),
        )

    @property
    def pipes(self) -> frozenset[ConsolePipe]:
        """The pipes of the sessions open now."""
        return frozenset(self._pipes)

    @property
    def open_sessions(self) -> int:
        """Sessions between their upgrade and their end event."""
        return self._sessions

    async def find_vm(self, vm_ref: str) -> VmRecord:
        """The VM by id, else by name, read from the store (fresh state); VmNotFound."""
        if not _VM_REF.match(vm_ref):  # also keeps KV key syntax errors out
            raise VmNotFound(f"VM {vm_ref!r} does not exist", vm=vm_ref)
        try:
            return (await self._vms.get(vm_ref))[0]
        except NotFound:
            pass
        vm_id = await self._vms.id_for_name(vm_ref)
        record = await self._vms.find(vm_id) if vm_id else None
        if record is None:
            raise VmNotFound(f"VM {vm_ref!r} does not exist", vm=vm_ref)
        return record

    @staticmethod
    def vnc_of(record: VmRecord) -> VncEndpoint:
        """The VM's VNC endpoint, or ConsoleUnavailable (409) saying why there is none."""
        if record.state not in CONSOLE_STATES:
            raise ConsoleUnavailable(
                f"VM {record.name!r} is {record.state.value}; it has no console now",
                vm_id=record.id, state=record.state.value,
            )
        if record.vnc is None:
            raise ConsoleUnavailable(
                f"VM {record.name!r} has no VNC display reported by its node",
                vm_id=record.id, state=record.state.value,
            )
        return record.vnc

    async def issue(self, vm_ref: str, user: str) -> TicketResponse:
        """A ticket for the VM's console (409 when it has none now: no use waiting for it)."""
        record = await self.find_vm(vm_ref)
        self.vnc_of(record)
        token, ticket = await self.tickets.issue(vm_id=record.id, node=record.node, user=user)
        log.info("console ticket issued", vm_id=record.id, user=user)
        return TicketResponse(
            token=token, url=ws_url(token), expires_at=ticket.expires_at, vm_id=record.id
        )

    def check_origin(self, request: web.Request) -> None:
        """OriginRejected unless the Origin is ours or allowed (or absent, when allowed)."""
        origin = request.headers.get("Origin")
        if not origin_allowed(
            origin, own=own_origins(request, self.settings), allowed=self._allowed_origins,
            allow_missing=self.settings.console_allow_no_origin,
        ):
            shown = origin if origin is not None else "(none)"
            raise OriginRejected(f"Origin {shown} may not open consoles", origin=shown)

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        """Run one console WebSocket to its end (the checks are in the module docstring)."""
        ws = self._new_ws()
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="a console is a WebSocket: send an Upgrade request")
        if self._stopping:
            raise web.HTTPServiceUnavailable(text="gateway shutting down")
        self.check_origin(request)
        ticket = await self.tickets.consume(request.query.get("token", ""))
        record = await self.find_vm(ticket.vm_id)
        vnc = self.vnc_of(record)
        session = _Session(ticket, request.remote or "")
        with structlog.contextvars.bound_contextvars(
            vm_id=record.id, session_id=session.id, user=ticket.user
        ):
            # Subscribed before connecting, so a stop that happens meanwhile is not missed.
            async with VmWatch(self._nc, record.id, session.vm_ended):
                await ws.prepare(request)
                await self._run(session, ws, vnc, request.transport)
        return ws

    def _new_ws(self) -> web.WebSocketResponse:
        # 'binary' is echoed only when offered; without protocols offered none is answered.
        # No permessage-deflate: RFB encodings compress already, deflate would only cost CPU.
        return web.WebSocketResponse(
            protocols=("binary",), compress=False, heartbeat=WS_HEARTBEAT_S,
            # writer_limit 0: every send_bytes of the backlog waits while the client is behind.
            max_msg_size=MAX_CLIENT_FRAME, writer_limit=0,
        )

    async def _run(
        self, session: _Session, ws: web.WebSocketResponse, vnc: VncEndpoint,
        transport: asyncio.BaseTransport | None,
    ) -> None:
        self._sessions += 1
        self._no_sessions.clear()
        metrics.console_session_started()
        try:
            # The audit trail never ends a session: a lost event is logged.
            await publish_event(self._js, session.started_event(), best_effort=True)
            await self._pipe(session, ws, vnc, transport)
        finally:
            result = session.result
            log.info("console session ended", code=result.close_code, reason=result.reason,
                     bytes_to_vnc=result.bytes_to_vnc, bytes_to_client=result.bytes_to_client)
            try:
                # Shielded: the audit record is written even when the handler is cancelled.
                await asyncio.shield(
                    publish_event(self._js, session.ended_event(), best_effort=True))
            finally:
                metrics.console_session_ended(result.bytes_to_vnc, result.bytes_to_client)
                self._sessions -= 1
                if not self._sessions:
                    self._no_sessions.set()

    async def _pipe(
        self, session: _Session, ws: web.WebSocketResponse, vnc: VncEndpoint,
        transport: asyncio.BaseTransport | None,
    ) -> None:
        pipe = ConsolePipe(
            ws, transport, idle_timeout_s=self.settings.console_idle_timeout_s,
            max_session_s=self.settings.console_max_session_s,
        )
        password = (vnc_password(self._vnc_key, session.ticket.vm_id) if vnc.password_protected
                    else None)
        try:
            await pipe.connect(vnc.host, vnc.port, VNC_CONNECT_TIMEOUT_S, password)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, VncHandshakeFailed) as exc:
            reason = f"cannot reach the VNC display at {vnc.host}:{vnc.port}: {exc or 'timeout'}"
            session.result = PipeResult(close_code=CLOSE_INTERNAL, reason=reason)
            await ws.close(code=CLOSE_INTERNAL, message=clip_reason(reason).encode())
            return
        with self._track(pipe), session.attach(pipe):
            log.info("console session started", vnc=f"{vnc.host}:{vnc.port}")
            await pipe.run()

    @contextlib.contextmanager
    def _track(self, pipe: ConsolePipe) -> Iterator[None]:
        self._pipes.add(pipe)
        try:
            yield
        finally:
            self._pipes.discard(pipe)

    async def shutdown(self, timeout_s: float = SHUTDOWN_WAIT_S) -> None:
        """End every open session with 1001 and wait (bounded) until each wrote its audit event.

        Console WebSockets are not in ``app_keys.WEBSOCKETS``: closing them here, through their
        pipe, keeps the recorded close code and reason true ("gateway shutting down").
        """
        self._stopping = True
        for pipe in list(self._pipes):
            pipe.end(CLOSE_GOING_AWAY, "gateway shutting down")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_sessions.wait(), timeout_s)


class _Session:
    """The identity and timing of one session, and the link from VM events to its pipe."""

    def __init__(self, ticket: ConsoleTicket, remote: str) -> None:
        self.id = uuid.uuid4().hex
        self.ticket = ticket
        self.remote = remote
        self.started_at: datetime = utcnow()
        self._pipe: ConsolePipe | None = None
        self._vm_reason: str | None = None
        # The pipe's own result object once attached: complete even if the handler is cancelled.
        self.result = PipeResult(close_code=CLOSE_GOING_AWAY, reason="session cancelled")

    def vm_ended(self, reason: str) -> None:
        """Called by the VM watch: the VM stopped or was deleted."""
        self._vm_reason = reason
        if self._pipe is not None:
            self._pipe.end(CLOSE_INTERNAL, reason)

    @contextlib.contextmanager
    def attach(self, pipe: ConsolePipe) -> Iterator[None]:
        self._pipe = pipe
        self.result = pipe.result
        if self._vm_reason is not None:  # the VM ended before the pipe existed
            pipe.end(CLOSE_INTERNAL, self._vm_reason)
        try:
            yield
        finally:
            self._pipe = None

    def started_event(self) -> ConsoleSessionStarted:
        return ConsoleSessionStarted(
            session_id=self.id, vm_id=self.ticket.vm_id, user=self.ticket.user,
            remote=self.remote, time=self.started_at,
        )

    def ended_event(self) -> ConsoleSessionEnded:
        result = self.result
        return ConsoleSessionEnded(
            session_id=self.id, vm_id=self.ticket.vm_id, user=self.ticket.user,
            remote=self.remote, started_at=self.started_at,
            bytes_to_vnc=result.bytes_to_vnc, bytes_to_client=result.bytes_to_client,
            close_code=result.close_code, reason=result.reason,
        )
