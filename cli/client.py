"""``lq``'s view of :mod:`limiquantix.client`: the same requests, its errors as ``lq``'s lines.

The requests themselves are the library's (:class:`~limiquantix.client.transport.Transport`,
and :class:`~limiquantix.client.Client` for typed calls); this module only turns the library's
typed exceptions into :class:`CliError` s with the wording and exit codes ``lq`` has always had
(``cannot reach the API at ...``, ``(token from ...)`` on a 401).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import IO, Any, TypeVar

from limiquantix.cli.config import Config
from limiquantix.cli.errors import ApiError, ApiUnreachable, CliError, VmFailed, WaitTimeout
from limiquantix.client import errors as lib
from limiquantix.client.errors import from_problem
from limiquantix.client.sync import Client
from limiquantix.client.transport import (
    REQUEST_TIMEOUT_S,
    Opened,
    Response,
    Transport,
    seg,
)
from limiquantix.client.transport import decode as _decode

__all__ = ["ApiClient", "Opened", "Response", "cli_error", "decode", "problem_error", "seg"]

T = TypeVar("T")
_USER_AGENT = "lq/0.1"
_VERSION_HINT = "Check that lq and the API are the same version."


def cli_error(exc: lib.ClientError, config: Config | None = None) -> CliError:
    """The ``lq`` error (one line, an exit code) for an error of the client library."""
    match exc:
        case lib.ConnectionFailed():
            url = config.url if config is not None else exc.details.get("url", "")
            return ApiUnreachable(f"cannot reach the API at {url}: {exc.reason}")
        case lib.ApiError():
            error = ApiError(exc.http_status, exc.code, exc.message, exc.hint, **exc.details)
            if exc.http_status == 401 and config is not None:
                error.message = f"{error.message} (token from {config.token_source})"
            return error
        case lib.BadResponse():
            return ApiError(0, "bad_response", exc.message, _VERSION_HINT)
        case lib.WaitTimeout():
            return WaitTimeout(exc.message)
        case lib.VmFailed():
            return VmFailed(exc.message, code=exc.code, hint=exc.hint)
    return CliError(exc.message, hint=exc.hint)


@contextlib.contextmanager
def translated(config: Config | None = None) -> Iterator[None]:
    """Re-raise the library's errors as ``lq``'s."""
    try:
        yield
    except lib.ClientError as exc:
        raise cli_error(exc, config) from None


def problem_error(status: int, reason: str, body: bytes, content_type: str = "") -> ApiError:
    """The one-line error for a non-2xx answer, from its problem document when there is one."""
    error = cli_error(from_problem(status, reason, body, content_type))
    assert isinstance(error, ApiError)
    return error


def decode(body: bytes, type: type[T]) -> T:
    """Decode a JSON answer into a shared schema; a mismatch is a clear error, not a traceback."""
    with translated():
        return _decode(body, type)


class ApiClient:
    """``GET``/``POST``/... on the API with the bearer token; raises :class:`ApiError`.

    ``transport`` is the library's; ``api`` is the typed :class:`~limiquantix.client.Client`
    on it (call it inside :func:`translated`).
    """

    def __init__(self, config: Config, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.config = config
        self.timeout_s = timeout_s
        self.transport = Transport(config.url, config.token, timeout_s, user_agent=_USER_AGENT)
        self.api = Client.over(self.transport)

    def translated(self) -> contextlib.AbstractContextManager[None]:
        return translated(self.config)

    def open(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
             headers: Mapping[str, str] | None = None, body: bytes | IO[bytes] | None = None,
             timeout_s: float | None = None) -> Opened:
        with self.translated():
            return self.transport.open(method, path, query=query, headers=headers, body=body,
                                       timeout_s=timeout_s)

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                json_body: Any = None, headers: Mapping[str, str] | None = None) -> Response:
        with self.translated():
            return self.transport.request(method, path, query=query, json_body=json_body,
                                          headers=headers)

    def get(self, path: str, type: type[T], query: Mapping[str, Any] | None = None) -> T:
        with self.translated():
            return self.transport.get(path, type, query)

    def post(self, path: str, type: type[T], json_body: Any = None,
             headers: Mapping[str, str] | None = None) -> T:
        with self.translated():
            return self.transport.post(path, type, json_body, headers)

    def get_list(self, path: str, type: type[T], query: Mapping[str, Any] | None = None
                 ) -> list[T]:
        with self.translated():
            return self.transport.get_list(path, type, query)

    def unreachable(self, exc: BaseException) -> CliError:
        return cli_error(self.transport.unreachable(exc), self.config)
