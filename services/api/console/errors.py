"""Typed errors of the console gateway; each refusal has a stable code and says what to do next."""

from __future__ import annotations

from limiquantix.common.errors import Conflict, LimiquantixError


class ConsoleError(LimiquantixError):
    """Base of every console refusal."""

    code = "console_error"
    status = 500


class TicketInvalid(ConsoleError):
    """The token is unknown, malformed or was already used (tickets work once)."""

    code = "console_ticket_invalid"
    status = 403
    default_hint = "Ask for a new ticket with POST /v1/vms/{id}/console; each ticket works once."


class TicketExpired(ConsoleError):
    """The ticket was not used before its expiry."""

    code = "console_ticket_expired"
    status = 403
    default_hint = (
        "Ask for a new ticket and open the WebSocket at once (LQ_CONSOLE_TICKET_TTL_S)."
    )


class OriginRejected(ConsoleError):
    """The WebSocket's Origin is neither the gateway itself nor an allowed origin."""

    code = "console_origin_rejected"
    status = 403
    default_hint = (
        "Open the console from the gateway's own address, or add the page's origin to "
        "LQ_CONSOLE_ORIGINS."
    )


class ConsoleUnavailable(Conflict):
    """The VM has no VNC display now (not running, or not yet reported by its node)."""

    code = "console_unavailable"
    default_hint = "Start the VM and wait until it is running; consoles exist only while it runs."


class VncUnreachable(ConsoleError):
    """The gateway could not connect to the VM's VNC display on its node."""

    code = "console_vnc_unreachable"
    status = 502
    default_hint = "Check that the VM's node is up and its console address is reachable."
