"""Named API tokens and their roles (``lq_tokens`` bucket, key: token id).

A token is shown once, at creation: ``lqt_<id>_<secret>``. The bucket keeps only the SHA-256 of
the whole token (it has 256 bits of entropy: a fast hash is enough, and a stolen bucket gives
no usable token). The id in the token finds its record without a scan.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

import msgspec

from limiquantix.common.model import Model, RequestBody


class Role(enum.StrEnum):
    """What a token may do: each role includes the ones below it."""

    ADMIN = "admin"  # everything, token management included
    OPERATOR = "operator"  # VMs and images (create, change, delete), not tokens
    VIEWER = "viewer"  # read only


ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}

TokenName = Annotated[str, msgspec.Meta(
    pattern=r"^[a-z0-9]([a-z0-9._-]{0,62})$",
    description="token name: lower-case letters, digits, '.', '_' or '-' (1-63)")]


class ApiTokenRecord(Model, frozen=True, kw_only=True):
    """A stored token: never the token itself, only its hash."""

    id: str
    name: str
    role: Role
    sha256: str
    created_at: datetime
    created_by: str = ""


class CreateTokenRequest(RequestBody, frozen=True, kw_only=True):
    """Body of ``POST /v1/tokens``."""

    name: TokenName
    role: Role = Role.VIEWER


class TokenInfo(Model, frozen=True, kw_only=True):
    """A token as listed (no secret)."""

    id: str
    name: str
    role: Role
    created_at: datetime
    created_by: str = ""


class TokenCreated(Model, frozen=True, kw_only=True):
    """Reply of ``POST /v1/tokens``: the only time ``token`` is shown."""

    id: str
    name: str
    role: Role
    token: str
    created_at: datetime


class TokenList(Model, frozen=True, kw_only=True):
    tokens: tuple[TokenInfo, ...] = ()


token_encoder = msgspec.json.Encoder()
token_decoder = msgspec.json.Decoder(ApiTokenRecord)
