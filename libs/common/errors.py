"""Typed errors shared by every service.

Each error has a stable ``code`` (part of the public API, never renamed), the HTTP status the
gateway answers with, and a ``hint`` telling the user what to do next. Over NATS they travel as
:class:`ErrorReply`; over HTTP as ``application/problem+json``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from limiquantix.common.model import Model


class ErrorReply(Model, frozen=True, kw_only=True):
    """An error as it travels in a NATS reply."""

    code: str
    message: str
    status: int = 500
    hint: str = ""
    details: dict[str, Any] = {}


class LimiquantixError(Exception):
    """Base of every expected error; unexpected ones are logged and answered generically."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    default_hint: ClassVar[str] = ""

    def __init__(self, message: str, *, hint: str = "", **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint or self.default_hint
        self.details = details

    def to_reply(self) -> ErrorReply:
        """The NATS/HTTP form of this error."""
        return ErrorReply(
            code=self.code, message=self.message, status=self.status, hint=self.hint,
            details=self.details,
        )


class InvalidRequest(LimiquantixError):
    """The request is malformed or fails validation."""

    code = "invalid_request"
    status = 422
    default_hint = "Fix the request as described and send it again."


class NotFound(LimiquantixError):
    """The named resource does not exist."""

    code = "not_found"
    status = 404


class Conflict(LimiquantixError):
    """The request conflicts with the current state of a resource."""

    code = "conflict"
    status = 409


class Unavailable(LimiquantixError):
    """A service the request needs did not answer in time."""

    code = "unavailable"
    status = 503
    default_hint = "Retry in a few seconds; check that all Limiquantix services are running."


class RemoteError(LimiquantixError):
    """An error reported by another service, carried through unchanged."""

    def __init__(self, reply: ErrorReply) -> None:
        super().__init__(reply.message, hint=reply.hint, **reply.details)
        self.reply = reply

    def to_reply(self) -> ErrorReply:
        return self.reply
