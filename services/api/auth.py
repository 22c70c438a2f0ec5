"""Bearer-token authentication of every ``/v1`` route.

The token is ``LQ_API_TOKEN`` when set; otherwise one is generated at the first start and kept in
``<data_dir>/api-token`` (mode 0600) so later starts, other replicas on the host and the ``lq``
CLI reuse it. Handlers decorated with :func:`public` (health, the OpenAPI document, console pages
that authenticate with their own ticket) and every path outside ``/v1`` (static UI assets) need
no token.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from aiohttp import web

from limiquantix.api import app_keys
from limiquantix.api.errors import Unauthorized
from limiquantix.common.settings import Settings

TOKEN_FILE = "api-token"
_PUBLIC_ATTR = "__lq_public__"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)


def public(handler: H) -> H:
    """Mark a ``/v1`` handler as needing no bearer token."""
    setattr(handler, _PUBLIC_ATTR, True)
    return handler


def is_public(handler: object) -> bool:
    return bool(getattr(handler, _PUBLIC_ATTR, False))


def load_or_create_token(settings: Settings) -> str:
    """The configured token, else the one in ``<data_dir>/api-token`` (created 0600 if absent)."""
    if settings.api_token:
        return settings.api_token
    path = token_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two replicas starting together cannot both write (one reads the other's).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_token(path)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def _read_token(path: Path) -> str:
    token = path.read_text().strip()
    if not token:
        raise RuntimeError(f"{path} is empty; delete it to have a new token generated")
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # the token is a password: never readable by others
    return token


def token_path(settings: Settings) -> Path:
    """Where a generated token is kept."""
    return settings.data_path / TOKEN_FILE


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Reject ``/v1`` requests without the right bearer token (401 problem)."""
    if request.path.startswith("/v1/") and not is_public(request.match_info.handler):
        given = _bearer(request)
        if given is None:
            raise Unauthorized("missing bearer token")
        expected = request.app[app_keys.API_TOKEN]
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("invalid bearer token")
    return await handler(request)
