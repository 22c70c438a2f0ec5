"""Console tickets: single-use random tokens, stored only as their SHA-256 in JetStream KV.

A ticket is consumed by deleting its key with the revision it was read at (compare-and-set), so
of two WebSockets racing with one token exactly one wins. The ticket carries its own expiry; the
bucket's TTL only sweeps tickets nobody ever used.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from nats.js.kv import KeyValue

from limiquantix.api.console.errors import TicketExpired, TicketInvalid
from limiquantix.common.kv_records import KvRecords
from limiquantix.common.model import Model, utcnow

WS_PATH = "/v1/console/ws"
# token_urlsafe(32) gives 43 characters; anything much longer is not one of ours.
MAX_TOKEN_LENGTH = 128


class ConsoleTicket(Model, frozen=True, kw_only=True):
    """What a token grants: one console session on one VM, if used before ``expires_at``."""

    vm_id: str
    node: str = ""
    user: str = ""
    created: datetime
    expires_at: datetime


class TicketResponse(Model, frozen=True, kw_only=True):
    """Body of ``POST /v1/vms/{id}/console``: the token is shown once, here."""

    token: str
    url: str
    expires_at: datetime
    vm_id: str


def _unknown(key: str) -> TicketInvalid:
    return TicketInvalid("console token unknown or already used")


def token_key(token: str) -> str:
    """The KV key of a token: its SHA-256, so a leaked bucket grants nothing."""
    return hashlib.sha256(token.encode()).hexdigest()


def ws_url(token: str) -> str:
    """The WebSocket path (relative to the gateway) that presents ``token``."""
    return f"{WS_PATH}?token={token}"


class TicketStore:
    """Issues and consumes tickets in the ``CONSOLE_TOKENS_BUCKET`` bucket."""

    def __init__(
        self, kv: KeyValue, *, ttl_s: float, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._tickets = KvRecords(kv, ConsoleTicket, _unknown)
        self._ttl = timedelta(seconds=ttl_s)
        self._clock = clock

    async def issue(self, *, vm_id: str, node: str, user: str) -> tuple[str, ConsoleTicket]:
        """A fresh token (returned once, never stored) and the ticket stored under its hash."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        ticket = ConsoleTicket(
            vm_id=vm_id, node=node, user=user, created=now, expires_at=now + self._ttl
        )
        if await self._tickets.create(token_key(token), ticket) is None:
            raise RuntimeError("a fresh 256-bit token collided")  # never: it is random
        return token, ticket

    async def consume(self, token: str) -> ConsoleTicket:
        """The ticket of ``token``, deleted so it never works again; TicketInvalid/Expired."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise TicketInvalid("console token missing or malformed")
        key = token_key(token)
        ticket, revision = await self._tickets.get(key)
        # CAS on the revision: a second consumer holding the same revision loses here.
        if not await self._tickets.delete(key, revision=revision):
            raise TicketInvalid("console token already used")
        if ticket.expires_at <= self._clock():
            raise TicketExpired(
                "console ticket expired", expired_at=ticket.expires_at.isoformat()
            )
        return ticket
