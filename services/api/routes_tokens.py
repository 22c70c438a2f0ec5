"""``/v1/tokens``: named API tokens with roles (admin only; see auth.py for what roles allow).

``POST`` answers the token once; the bucket keeps its SHA-256 only. Names are unique (checked
against the listed tokens: creation is rare and admin-only, so two admins racing on one name
is the only way to get a duplicate, and it is harmless: the ids differ).
"""

from __future__ import annotations

import uuid

from aiohttp import web

from limiquantix.api import app_keys
from limiquantix.api.auth import is_token_id, new_token, principal_of, token_sha256
from limiquantix.api.errors import TokenNameTaken, TokenNotFound
from limiquantix.api.http_json import decode_body, json_response
from limiquantix.api.openapi import OpenApiPart, Operation
from limiquantix.common.api_tokens import (
    ApiTokenRecord,
    CreateTokenRequest,
    TokenCreated,
    TokenInfo,
    TokenList,
)
from limiquantix.common.model import utcnow


def _info(record: ApiTokenRecord) -> TokenInfo:
    return TokenInfo(id=record.id, name=record.name, role=record.role,
                     created_at=record.created_at, created_by=record.created_by)


async def create_token(request: web.Request) -> web.Response:
    """POST /v1/tokens: a new named token; the secret is in this answer only."""
    body = await decode_body(request, CreateTokenRequest)
    tokens = request.app[app_keys.TOKENS]
    if any(r.name == body.name for r in await tokens.all()):
        raise TokenNameTaken(f"a token named {body.name!r} exists", name=body.name)
    token_id = uuid.uuid4().hex
    token = new_token(token_id)
    record = ApiTokenRecord(id=token_id, name=body.name, role=body.role,
                            sha256=token_sha256(token), created_at=utcnow(),
                            created_by=principal_of(request).name)
    await tokens.create(token_id, record)
    created = TokenCreated(id=token_id, name=record.name, role=record.role, token=token,
                           created_at=record.created_at)
    return json_response(created, status=201, headers={
        "Location": f"/v1/tokens/{token_id}", "Cache-Control": "no-store",
    })


async def list_tokens(request: web.Request) -> web.Response:
    """GET /v1/tokens: every named token, without secrets."""
    records = await request.app[app_keys.TOKENS].all()
    return json_response(TokenList(tokens=tuple(
        _info(r) for r in sorted(records, key=lambda r: (r.name, r.id)))))


async def delete_token(request: web.Request) -> web.Response:
    """DELETE /v1/tokens/{id}: the token stops working at once."""
    token_id = request.match_info["id"]
    tokens = request.app[app_keys.TOKENS]
    if not is_token_id(token_id) or await tokens.find(token_id) is None:
        raise TokenNotFound(f"no token with id {token_id!r}")
    await tokens.purge(token_id)
    return web.Response(status=204)


OPENAPI = OpenApiPart(tag="tokens", operations=(
    Operation(method="POST", path="/v1/tokens",
              summary="Create a named API token (admin); the token is shown only here",
              body=CreateTokenRequest, response=TokenCreated, status=201, errors=(403, 409),
              description="Roles: `admin` (everything), `operator` (VMs and images), "
                          "`viewer` (read only)."),
    Operation(method="GET", path="/v1/tokens", summary="Named API tokens (admin), no secrets",
              response=TokenList, errors=(403,)),
    Operation(method="DELETE", path="/v1/tokens/{id}",
              summary="Delete a named API token (admin); it is refused from then on",
              status=204, errors=(403, 404)),
))


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/tokens", create_token)
    app.router.add_get("/v1/tokens", list_tokens)
    app.router.add_delete("/v1/tokens/{id}", delete_token)
