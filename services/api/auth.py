"""Bearer-token authentication and roles of every ``/v1`` route.

Two kinds of token:

- the *master* token, ``LQ_API_TOKEN`` when set, otherwise generated at the first start and kept
  in ``<data_dir>/api-token`` (mode 0600) so later starts, other replicas on the host and the
  ``lq`` CLI reuse it. It is ``admin``; it exists to bootstrap (create named tokens) and for
  local mode.
- *named* tokens (``POST /v1/tokens``, routes_tokens.py), each with a role: ``admin``
  (everything), ``operator`` (VMs and images, not tokens), ``viewer`` (read only). Only their
  SHA-256 is stored (``lq_tokens``), looked up by the id the token carries, on every request:
  a deleted token is refused at once.

The caller (:class:`Principal`) is kept on the request for handlers and audit events. A ``/v1``
route needs no token only when its OpenAPI ``Operation`` says ``public=True`` (the OpenAPI
document, console pages that authenticate with their own ticket): that one declaration is what
this middleware reads (:class:`PublicRoutes`) and what the document shows. Paths outside ``/v1``
(health, static UI assets) are not checked here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import msgspec
from aiohttp import web

from limiquantix.api import app_keys
from limiquantix.api.errors import Forbidden, NotReady, Unauthorized
from limiquantix.api.openapi import Operation, openapi_path
from limiquantix.common.api_tokens import ROLE_RANK, Role
from limiquantix.common.settings import Settings

TOKEN_FILE = "api-token"
TOKEN_PREFIX = "lqt_"
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ADMIN_PATHS = ("/v1/tokens",)
MASTER = "master"
_TOKEN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the master token or a named token (its id, name and role)."""

    id: str
    name: str
    role: Role


PRINCIPAL = web.RequestKey("principal", Principal)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass(frozen=True, slots=True)
class PublicRoutes:
    """The (method, path) pairs whose OpenAPI ``Operation`` is ``public``: no token needed."""

    pairs: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def of(cls, operations: Iterable[Operation]) -> PublicRoutes:
        return cls(frozenset((op.method.upper(), openapi_path(op.path))
                             for op in operations if op.public))

    def allows(self, request: web.Request) -> bool:
        """True when the route ``request`` matched is declared public (HEAD as its GET)."""
        resource = request.match_info.route.resource
        if resource is None:  # no route matched (404/405): not public
            return False
        method = "GET" if request.method == "HEAD" else request.method
        return (method, openapi_path(resource.canonical)) in self.pairs


PUBLIC_ROUTES = web.AppKey("public_routes", PublicRoutes)


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


def is_token_id(value: str) -> bool:
    """A named token's id: ``uuid4().hex`` (also a safe KV key)."""
    return bool(_TOKEN_ID.match(value))


def token_sha256(token: str) -> str:
    """What the ``lq_tokens`` bucket stores of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(token_id: str) -> str:
    """A named token's secret form: ``lqt_<id>_<random>`` (shown once)."""
    return f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def principal_of(request: web.Request) -> Principal:
    """The authenticated caller (handlers behind the auth middleware always have one)."""
    return request[PRINCIPAL]


def required_role(method: str, path: str) -> Role:
    """The least role a request needs: token management is admin, reads are viewer, the rest
    (VMs, images, consoles, webhooks) operator."""
    if path == _ADMIN_PATHS[0] or path.startswith(_ADMIN_PATHS[0] + "/"):
        return Role.ADMIN
    return Role.VIEWER if method in _READ_METHODS else Role.OPERATOR


async def authenticate(app: web.Application, given: str) -> Principal:
    """The principal of a bearer token; Unauthorized when it is not a live token."""
    if hmac.compare_digest(given.encode(), app[app_keys.API_TOKEN].encode()):
        return Principal(id=MASTER, name=MASTER, role=Role.ADMIN)
    token_id = given.removeprefix(TOKEN_PREFIX).partition("_")[0]
    if not given.startswith(TOKEN_PREFIX) or not is_token_id(token_id):
        raise Unauthorized("invalid bearer token")
    tokens = app.get(app_keys.TOKENS)
    if tokens is None:
        raise NotReady("the API is not connected to NATS yet; named tokens cannot be checked")
    try:
        record = await tokens.find(token_id)
    except msgspec.DecodeError:
        record = None
    if record is None or not hmac.compare_digest(record.sha256, token_sha256(given)):
        raise Unauthorized("invalid bearer token")
    return Principal(id=record.id, name=record.name, role=record.role)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Reject ``/v1`` requests without a live bearer token (401) or with too small a role
    (403 ``forbidden``)."""
    public = request.app.get(PUBLIC_ROUTES, PublicRoutes())
    if request.path.startswith("/v1/") and not public.allows(request):
        given = _bearer(request)
        if given is None:
            raise Unauthorized("missing bearer token")
        principal = await authenticate(request.app, given)
        needed = required_role(request.method, request.path)
        if ROLE_RANK[principal.role] < ROLE_RANK[needed]:
            raise Forbidden(
                f"token {principal.name!r} is {principal.role}; {request.method} "
                f"{request.path} needs {needed}", role=str(principal.role), needed=str(needed),
                hint=f"Ask an admin for a token with the {needed} role (lq token create NAME "
                     f"--role {needed}).",
            )
        request[PRINCIPAL] = principal
    return await handler(request)
