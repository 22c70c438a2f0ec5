"""The synchronous HTTP transport: JSON in and out, problems as typed errors.

``http.client`` on purpose: a script (or ``lq``) does one thing per run and a plain socket keeps
start-up fast. Streams (SSE, uploads) use their own connection so they never block requests.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any, NamedTuple, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import msgspec

from limiquantix.client.errors import BadResponse, ConnectionFailed, from_problem

T = TypeVar("T")
REQUEST_TIMEOUT_S = 30.0
UPLOAD_BLOCK = 1024 * 1024
USER_AGENT = "limiquantix-client/0.1"


@dataclass
class Response:
    """A read answer; header names are lower case."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""

    def json(self) -> Any:
        return msgspec.json.decode(self.body) if self.body else None


class Opened(NamedTuple):
    conn: http.client.HTTPConnection
    response: http.client.HTTPResponse
    sock: socket.socket | None


def seg(value: str) -> str:
    """One path segment, quoted (names and ids come from users)."""
    return quote(value, safe="")


def query_string(query: Mapping[str, Any] | None) -> str:
    """``?a=b`` without the empty and None values (an unset filter is no filter)."""
    clean = {k: v for k, v in (query or {}).items() if v is not None and v != "" and v != []}
    return f"?{urlencode(clean, doseq=True)}" if clean else ""  # a list: the key repeated


def reason_of(exc: BaseException) -> str:
    """A few words on why a connection failed."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def decode(body: bytes, type: type[T]) -> T:
    """Decode a JSON answer into a shared schema; a mismatch is :class:`BadResponse`."""
    try:
        return msgspec.json.decode(body or b"null", type=type)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadResponse(f"unexpected answer from the API: {exc}") from None


def decode_list(body: bytes, type: type[T]) -> list[T]:
    """A collection, whether the API answers a bare array or ``{"items": [...]}``."""
    return decode_page(body, type)[0]


def decode_page(body: bytes, type: type[T]) -> tuple[list[T], str | None]:
    """One page of a collection and the cursor of the next (None: the last page)."""
    try:
        value = msgspec.json.decode(body or b"null")
        cursor = None
        if isinstance(value, dict):  # {"items": [...]} or another single list-valued key
            cursor = value.get("next_cursor")
            lists = [v for v in value.values() if isinstance(v, list)]
            value = value.get("items", lists[0] if len(lists) == 1 else [])
        items = msgspec.convert(value, list[type])  # type: ignore[valid-type]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadResponse(f"unexpected answer from the API: {exc}") from None
    return items, cursor if isinstance(cursor, str) and cursor else None


class Transport:
    """``GET``/``POST``/... on the API with the bearer token; errors raise typed exceptions."""

    def __init__(self, url: str, token: str, timeout_s: float = REQUEST_TIMEOUT_S,
                 user_agent: str = USER_AGENT) -> None:
        self.base_url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self.user_agent = user_agent
        parts = urlsplit(self.base_url)
        self._scheme = parts.scheme
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")

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
        return self._prefix + path + query_string(query)

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}", "User-Agent": self.user_agent,
                   "Accept": "application/json"}
        headers.update(extra or {})
        return headers

    def unreachable(self, exc: BaseException) -> ConnectionFailed:
        return ConnectionFailed(self.base_url, reason_of(exc))

    def open(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
             headers: Mapping[str, str] | None = None, body: bytes | IO[bytes] | None = None,
             timeout_s: float | None = None) -> Opened:
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
            raise from_problem(response.status, response.reason, data,
                               response.getheader("Content-Type", ""),
                               response.getheader("Retry-After"))
        return Opened(conn, response, sock)

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                json_body: Any = None, headers: Mapping[str, str] | None = None,
                body: bytes | IO[bytes] | None = None, timeout_s: float | None = None,
                ) -> Response:
        """One request (a JSON body, or raw ``body`` bytes or file), its whole answer read."""
        extra = dict(headers or {})
        if json_body is not None:
            body = msgspec.json.encode(json_body)
            extra["Content-Type"] = "application/json"
        conn, response, _ = self.open(method, path, query=query, headers=extra, body=body,
                                      timeout_s=timeout_s)
        try:
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self.unreachable(exc) from None
        finally:
            conn.close()
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)

    def call(self, method: str, path: str, type: type[T], *,
             query: Mapping[str, Any] | None = None, json_body: Any = None,
             headers: Mapping[str, str] | None = None, body: bytes | IO[bytes] | None = None,
             timeout_s: float | None = None) -> T:
        """One request, its JSON answer decoded into ``type``."""
        answer = self.request(method, path, query=query, json_body=json_body, headers=headers,
                              body=body, timeout_s=timeout_s)
        return decode(answer.body, type)

    def get(self, path: str, type: type[T], query: Mapping[str, Any] | None = None) -> T:
        return self.call("GET", path, type, query=query)

    def post(self, path: str, type: type[T], json_body: Any = None,
             headers: Mapping[str, str] | None = None) -> T:
        return self.call("POST", path, type, json_body=json_body, headers=headers)

    def get_list(self, path: str, type: type[T], query: Mapping[str, Any] | None = None
                 ) -> list[T]:
        """Every item of a collection, page after page (``next_cursor``)."""
        items: list[T] = []
        cursor: str | None = None
        while True:
            page, cursor = decode_page(
                self.request("GET", path, query={**(query or {}), "cursor": cursor}).body, type)
            items += page
            if cursor is None:
                return items
