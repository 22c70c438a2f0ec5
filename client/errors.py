"""What the client raises: one class per family of the API's stable problem ``code``s.

The API answers errors as ``application/problem+json`` (RFC 9457) with a stable ``code`` and a
``hint``. Codes are many (``vm_not_found``, ``image_not_found``, ...) and new ones appear; their
HTTP status is their family, so callers catch :class:`NotFound` and still read ``exc.code``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec

from limiquantix.common.errors import LimiquantixError

__all__ = [
    "ApiError", "BadResponse", "ClientError", "Conflict", "ConnectionFailed", "Forbidden",
    "InvalidRequest", "NotFound", "Problem", "ServerError", "TooLarge", "Unauthorized",
    "Unavailable", "VmFailed", "WaitTimeout", "from_problem",
]


class Problem(msgspec.Struct, kw_only=True):
    """An ``application/problem+json`` body with our ``code`` and ``hint``; any other member
    (the error's details) is kept by :func:`from_problem`."""

    code: str = ""
    detail: str = ""
    title: str = ""
    hint: str = ""
    status: int = 0
    request_id: str = ""


_PROBLEM_MEMBERS = frozenset({"type", "code", "detail", "title", "hint", "status", "request_id",
                              "retry_after"})


class ClientError(LimiquantixError):
    """Base of everything :mod:`limiquantix.client` raises on purpose."""

    code = "client_error"


class ApiError(ClientError):
    """The API answered with an error status; ``code`` is the API's own stable code."""

    def __init__(self, status: int, code: str, detail: str, hint: str = "", *,
                 request_id: str = "", **details: Any) -> None:
        super().__init__(detail, hint=hint, **details)
        self.http_status = status
        self.code = code  # type: ignore[misc]  # instance code: whatever the API said
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"


class InvalidRequest(ApiError):
    """400/422: the request is malformed or fails validation (``details`` may name a path)."""


class Unauthorized(ApiError):
    """401: no token, or the token is unknown or expired."""


class Forbidden(ApiError):
    """403: the token is valid but may not do this (or the address is not allowed)."""


class NotFound(ApiError):
    """404: the VM, image, node or route does not exist."""


class Conflict(ApiError):
    """409: the resource's state forbids this now (illegal transition, name taken, in use)."""


class TooLarge(ApiError):
    """413: the body (user-data, upload) is over a limit."""


class Unavailable(ApiError):
    """502/503/504: a part of the system is down or restarting; retry after ``retry_after``
    seconds (from the ``Retry-After`` header, 0 when the API did not say)."""

    def __init__(self, status: int, code: str, detail: str, hint: str = "", *,
                 retry_after: float = 0.0, request_id: str = "", **details: Any) -> None:
        super().__init__(status, code, detail, hint, request_id=request_id, **details)
        self.retry_after = retry_after


class ServerError(ApiError):
    """Any other status (500 ``internal`` included): a fault on the API's side."""


class ConnectionFailed(ClientError):
    """No HTTP answer at all (refused, DNS, TLS, timeout, a stream that could not resume)."""

    code = "api_unreachable"
    default_hint = "Check that the API is running and that the URL points at it."

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the API at {url}: {reason}", url=url)
        self.reason = reason


class BadResponse(ClientError):
    """The API answered something that does not decode into the shared schema."""

    code = "bad_response"
    default_hint = "Check that the client and the API are the same version."


class WaitTimeout(ClientError):
    """:meth:`wait_for` ran out of time; the work goes on in the background."""

    code = "wait_timeout"


class VmFailed(ClientError):
    """The VM went to ``error``, was deleted, or an action failed while we waited."""

    code = "vm_failed"

    def __init__(self, message: str, *, code: str = "", hint: str = "") -> None:
        super().__init__(message, hint=hint)
        if code:
            self.code = code  # type: ignore[misc]  # the node's own error code


_FAMILIES: dict[int, type[ApiError]] = {
    400: InvalidRequest, 422: InvalidRequest, 401: Unauthorized, 403: Forbidden,
    404: NotFound, 409: Conflict, 413: TooLarge,
}


def _retry_after(value: str | None) -> float:
    """Seconds from a ``Retry-After`` header (the HTTP-date form counts as unknown: 0)."""
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


def from_problem(status: int, reason: str, body: bytes, content_type: str = "",
                 retry_after: str | None = None) -> ApiError:
    """The typed error for a non-2xx answer, from its problem document when there is one."""
    problem, extra = Problem(), {}
    if body and ("json" in content_type or body.lstrip().startswith(b"{")):
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            problem = msgspec.json.decode(body, type=Problem)
            raw = msgspec.json.decode(body)
            if isinstance(raw, dict):
                extra = {k: v for k, v in raw.items() if k not in _PROBLEM_MEMBERS}
    code = problem.code or f"http_{status}"
    detail = problem.detail or problem.title
    if not detail:
        text = body.decode(errors="replace").strip().splitlines()
        detail = text[0][:200] if text else f"HTTP {status} {reason}".strip()
    if status in (502, 503, 504):
        return Unavailable(status, code, detail, problem.hint,
                           retry_after=_retry_after(retry_after),
                           request_id=problem.request_id, **extra)
    family = _FAMILIES.get(status, ServerError if status >= 500 else ApiError)
    return family(status, code, detail, problem.hint, request_id=problem.request_id, **extra)
