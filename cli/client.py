"""A small synchronous HTTP client for the public API: JSON in and out, problems as errors.

Synchronous (``http.client``) on purpose: ``lq`` does one thing per run, and a plain socket keeps
start-up fast. Streams (SSE, uploads) use their own connection so they never block requests.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any, NamedTuple, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import msgspec

from limiquantix.cli.config import Config
from limiquantix.cli.errors import ApiError, ApiUnreachable

T = TypeVar("T")
REQUEST_TIMEOUT_S = 30.0
UPLOAD_BLOCK = 1024 * 1024
_USER_AGENT = "lq/0.1"


class Problem(msgspec.Struct, kw_only=True):
    """An ``application/problem+json`` body (RFC 9457) with our ``code`` and ``hint``."""

    code: str = ""
    detail: str = ""
    title: str = ""
    hint: str = ""
    status: int = 0


@dataclass
class Response:
    """A read answer; header names are lower case."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Opened(NamedTuple):
    conn: http.client.HTTPConnection
    response: http.client.HTTPResponse
    sock: socket.socket | None


def seg(value: str) -> str:
    """One path segment, quoted (names and ids come from users)."""
    return quote(value, safe="")


def problem_error(status: int, reason: str, body: bytes, content_type: str = "") -> ApiError:
    """The one-line error for a non-2xx answer, from its problem document when there is one."""
    problem = Problem()
    if body and ("json" in content_type or body.lstrip().startswith(b"{")):
        with contextlib.suppress(msgspec.DecodeError):
            problem = msgspec.json.decode(body, type=Problem)
    code = problem.code or f"http_{status}"
    detail = problem.detail or problem.title
    if not detail:
        text = body.decode(errors="replace").strip().splitlines()
        detail = text[0][:200] if text else f"HTTP {status} {reason}".strip()
    return ApiError(status, code, detail, problem.hint)


class ApiClient:
    """``GET``/``POST``/... on the API with the bearer token; raises :class:`ApiError`."""

    def __init__(self, config: Config, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.config = config
        self.timeout_s = timeout_s
        parts = urlsplit(config.url)
        self._scheme = parts.scheme
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")

    # -- connections ---------------------------------------------------------------------

    def connect(self, timeout_s: float | None) -> http.client.HTTPConnection:
        """A new connection (not yet opened) to the API."""
        if self._scheme == "https":
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout_s, blocksize=UPLOAD_BLOCK,
                context=ssl.create_default_context(),
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout_s,
                                          blocksize=UPLOAD_BLOCK)

    def url(self, path: str, query: Mapping[str, Any] | None = None) -> str:
        """The request target: the URL's own path prefix, ``path`` and the query string."""
        clean = {k: v for k, v in (query or {}).items() if v is not None and v != ""}
        return self._prefix + path + (f"?{urlencode(clean)}" if clean else "")

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.config.token}", "User-Agent": _USER_AGENT,
                   "Accept": "application/json"}
        headers.update(extra or {})
        return headers

    def unreachable(self, exc: BaseException) -> ApiUnreachable:
        if isinstance(exc, ConnectionRefusedError):
            reason = "connection refused"
        elif isinstance(exc, socket.gaierror):
            reason = "host name not found"
        elif isinstance(exc, TimeoutError):
            reason = "timed out"
        else:
            reason = str(exc) or type(exc).__name__
        return ApiUnreachable(f"cannot reach the API at {self.config.url}: {reason}")

    def open(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
             headers: Mapping[str, str] | None = None, body: bytes | IO[bytes] | None = None,
             timeout_s: float | None = None,
             ) -> Opened:
        """Send a request and return the (unread) response; error answers raise."""
        conn = self.connect(self.timeout_s if timeout_s is None else timeout_s)
        try:
            conn.request(method, self.url(path, query), body=body, headers=self.headers(headers))
            sock = conn.sock  # kept: getresponse() may hand the socket over to the response
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self.unreachable(exc) from None
        if response.status >= 400:
            try:
                data = response.read()
            except (OSError, http.client.HTTPException):
                data = b""
            conn.close()
            raise self.annotate(problem_error(response.status, response.reason, data,
                                              response.getheader("Content-Type", "")))
        return Opened(conn, response, sock)

    def annotate(self, error: ApiError) -> ApiError:
        if error.http_status == 401:
            error.message = f"{error.message} (token from {self.config.token_source})"
        return error

    # -- plain requests ------------------------------------------------------------------

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                json_body: Any = None, headers: Mapping[str, str] | None = None) -> Response:
        body: bytes | None = None
        extra = dict(headers or {})
        if json_body is not None:
            body = msgspec.json.encode(json_body)
            extra["Content-Type"] = "application/json"
        conn, response, _ = self.open(method, path, query=query, headers=extra, body=body)
        try:
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self.unreachable(exc) from None
        finally:
            conn.close()
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)

    def get(self, path: str, type: type[T], query: Mapping[str, Any] | None = None) -> T:
        return decode(self.request("GET", path, query=query).body, type)

    def post(self, path: str, type: type[T], json_body: Any = None,
             headers: Mapping[str, str] | None = None) -> T:
        return decode(self.request("POST", path, json_body=json_body, headers=headers).body, type)

    def get_list(self, path: str, type: type[T], query: Mapping[str, Any] | None = None
                 ) -> list[T]:
        """A collection, whether the API answers a bare array or ``{"items": [...]}``."""
        raw = self.request("GET", path, query=query).body
        try:
            value = msgspec.json.decode(raw or b"null")
        except msgspec.DecodeError as exc:
            raise bad_response(exc) from None
        if isinstance(value, dict):  # {"items": [...]} or another single list-valued key
            lists = [v for v in value.values() if isinstance(v, list)]
            value = value.get("items", lists[0] if len(lists) == 1 else [])
        try:
            return msgspec.convert(value, list[type])  # type: ignore[valid-type]
        except msgspec.ValidationError as exc:
            raise bad_response(exc) from None


def decode(body: bytes, type: type[T]) -> T:
    """Decode a JSON answer into a shared schema; a mismatch is a clear error, not a traceback."""
    try:
        return msgspec.json.decode(body or b"null", type=type)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise bad_response(exc) from None


def bad_response(exc: Exception) -> ApiError:
    return ApiError(0, "bad_response", f"unexpected answer from the API: {exc}",
                    "Check that lq and the API are the same version.")
