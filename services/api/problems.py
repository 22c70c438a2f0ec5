"""Errors as ``application/problem+json`` (RFC 9457), with a request id on every response.

Expected errors (:class:`LimiquantixError`) keep their ``code``, ``hint`` and details; body
validation errors become 422 ``invalid_request`` naming the JSON path; unknown routes are 404
problems; anything else is logged with its context and answered 500 ``internal`` without
internals.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import msgspec
import nats.errors
import structlog
from aiohttp import web

from limiquantix.api.errors import MethodNotAllowed, NotReady, RouteNotFound
from limiquantix.common.errors import ErrorReply, InvalidRequest, LimiquantixError

log = structlog.get_logger()

PROBLEM_TYPE = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-Id"
_TYPE_BASE = "urn:limiquantix:problem:"
_RESERVED = frozenset({"type", "title", "status", "detail", "code", "hint", "request_id"})
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_JSON_PATH = re.compile(r"at `(\$[^`]*)`")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_encoder = msgspec.json.Encoder()
RETRY_AFTER_S = 2


def nats_unavailable(exc: nats.errors.Error) -> NotReady:
    """A NATS/JetStream failure no handler expected: the messaging layer is down or restarting,
    so the request may be retried (503 + Retry-After), never a 500."""
    return NotReady(f"NATS did not complete the request ({type(exc).__name__})")


def problem_body(reply: ErrorReply, request_id: str) -> dict[str, Any]:
    """The problem document of an error reply (details may add fields, never replace ours)."""
    try:
        title = HTTPStatus(reply.status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {k: v for k, v in reply.details.items() if k not in _RESERVED}
    body.update(
        type=_TYPE_BASE + reply.code, title=title, status=reply.status, detail=reply.message,
        code=reply.code, hint=reply.hint, request_id=request_id,
    )
    return body


def problem_response(reply: ErrorReply, request_id: str,
                     headers: dict[str, str] | None = None) -> web.Response:
    """An ``application/problem+json`` response (503s say when to retry)."""
    extra = dict(headers or {})
    if reply.status == 503:
        extra.setdefault("Retry-After", str(RETRY_AFTER_S))
    return web.Response(
        status=reply.status, body=_encoder.encode(problem_body(reply, request_id)),
        content_type=PROBLEM_TYPE, headers={REQUEST_ID_HEADER: request_id, **extra},
    )


def validation_error(exc: msgspec.ValidationError | msgspec.DecodeError) -> InvalidRequest:
    """A msgspec decode failure as 422 ``invalid_request`` with the JSON path when known."""
    message = str(exc)
    match = _JSON_PATH.search(message)
    details = {"path": match.group(1)} if match else {}
    if isinstance(exc, msgspec.ValidationError):
        return InvalidRequest(f"invalid request body: {message}", **details)
    return InvalidRequest(
        f"request body is not valid JSON: {message}",
        hint="Send a JSON object with Content-Type: application/json.", **details,
    )


def request_id_of(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _SANE_ID.match(given) else uuid.uuid4().hex


def _from_http_exception(exc: web.HTTPException) -> LimiquantixError:
    if isinstance(exc, web.HTTPNotFound):
        return RouteNotFound("no such route")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(
            f"method not allowed; allowed: {', '.join(sorted(exc.allowed_methods))}"
        )
    err = LimiquantixError(exc.text or exc.reason)
    err.status = exc.status  # type: ignore[misc]
    err.code = re.sub(r"[^a-z]+", "_", exc.reason.lower()).strip("_")  # type: ignore[misc]
    return err


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error as a problem; bind ``request_id`` and ``route`` to the log context."""
    request_id = request_id_of(request)
    route = request.match_info.route.resource
    route_name = route.canonical if route is not None else request.path
    with structlog.contextvars.bound_contextvars(request_id=request_id, route=route_name):
        try:
            response = await handler(request)
        except LimiquantixError as exc:
            return problem_response(exc.to_reply(), request_id)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return problem_response(validation_error(exc).to_reply(), request_id)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            allow = ({"Allow": ", ".join(sorted(exc.allowed_methods))}
                     if isinstance(exc, web.HTTPMethodNotAllowed) else None)
            return problem_response(_from_http_exception(exc).to_reply(), request_id, allow)
        except nats.errors.Error as exc:
            log.warning("nats failure answered 503", error=repr(exc), method=request.method,
                        path=request.path)
            return problem_response(nats_unavailable(exc).to_reply(), request_id)
        except Exception:
            log.exception("unexpected error", method=request.method, path=request.path)
            reply = ErrorReply(
                code="internal", status=500, message="internal error",
                hint=f"Retry; if it persists, report request id {request_id}.",
            )
            return problem_response(reply, request_id)
        if not response.prepared:
            response.headers.setdefault(REQUEST_ID_HEADER, request_id)
        return response
