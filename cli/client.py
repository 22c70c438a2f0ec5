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


class ApiClient(Transport):
    """The library's transport with ``lq``'s errors: ``get``/``post``/... and, typed,
    ``api.vms``/``api.images``/``api.nodes`` (a :class:`~limiquantix.client.Client` on it).

    Event streams read through ``raw``, the same transport without the translation: the
    library's stream must see its own errors to decide when to reconnect.
    """

    def __init__(self, config: Config, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        super().__init__(config.url, config.token, timeout_s, user_agent=_USER_AGENT)
        self.config = config
        self.raw = Transport(config.url, config.token, timeout_s, user_agent=_USER_AGENT)
        self.api = Client.over(self)

    def translated(self) -> contextlib.AbstractContextManager[None]:
        return translated(self.config)

    def open(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
             headers: Mapping[str, str] | None = None, body: bytes | IO[bytes] | None = None,
             timeout_s: float | None = None) -> Opened:
        with self.translated():
            return super().open(method, path, query=query, headers=headers, body=body,
                                timeout_s=timeout_s)

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                json_body: Any = None, headers: Mapping[str, str] | None = None,
                body: bytes | IO[bytes] | None = None, timeout_s: float | None = None,
                ) -> Response:
        with self.translated():
            return super().request(method, path, query=query, json_body=json_body,
                                   headers=headers, body=body, timeout_s=timeout_s)

    def call(self, method: str, path: str, type: type[T], *,
             query: Mapping[str, Any] | None = None, json_body: Any = None,
             headers: Mapping[str, str] | None = None, body: bytes | IO[bytes] | None = None,
             timeout_s: float | None = None) -> T:
        with self.translated():
            return super().call(method, path, type, query=query, json_body=json_body,
                                headers=headers, body=body, timeout_s=timeout_s)

    def get_list(self, path: str, type: type[T], query: Mapping[str, Any] | None = None
                 ) -> list[T]:
        with self.translated():
            return super().get_list(path, type, query)
