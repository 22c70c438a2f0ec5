"""Short-lived signed tokens for the image library's HTTP endpoints (files and uploads).

The library's HTTP port is reachable by whoever reaches the management network (on Kubernetes,
any pod), so every request carries ``Authorization: Bearer <token>``: an HMAC-SHA256, keyed
with a secret shared by the gateway, the node agents and the library, over
``{service, image id, method, expiry, subject}``. A token opens one image for one method for a
few minutes; ``subject`` names who asked (the gateway's caller), so an upload record is written
only by its creator. Why HMAC over a shared file rather than tokens issued over NATS: no round
trip per download, and nothing new to keep running; the secret is a Kubernetes Secret or, in
local mode, a 0600 file ``lq-local`` generates.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

import msgspec

from limiquantix.common.base import Model
from limiquantix.common.errors import LimiquantixError
from limiquantix.common.settings import Settings

SECRET_FILE = "image-library.key"
DEFAULT_TTL_S = 300.0  # long enough to start a download; a started transfer is not re-checked
VERSION = "lqi1"


class LibraryClaims(Model, frozen=True, kw_only=True):
    """What a token allows."""

    svc: str  # who signed: "gateway" or "node:<id>"
    img: str  # the image id
    m: str  # GET (also HEAD) or PUT
    exp: float  # unix time
    sub: str = ""  # the API caller the gateway acts for (uploads are bound to it)


class LibraryUnauthorized(LimiquantixError):
    """The request to the image library has no valid token for this image and method."""

    code = "unauthorized"
    status = 401
    default_hint = (
        "Image files are fetched through the API (GET /v1/images/{id}/file) or by node agents; "
        "all of them must share the image library secret (LQ_IMAGE_LIBRARY_SECRET_FILE)."
    )


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LibraryClaims)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, f"{VERSION}.{payload}".encode(), hashlib.sha256).digest())


def sign(secret: bytes, *, service: str, image_id: str, method: str, subject: str = "",
         ttl_s: float = DEFAULT_TTL_S, now: float | None = None) -> str:
    """A token for ``method`` on ``image_id``, valid ``ttl_s`` seconds."""
    claims = LibraryClaims(svc=service, img=image_id, m=_method(method), sub=subject,
                           exp=(now if now is not None else time.time()) + ttl_s)
    payload = _b64(_encoder.encode(claims))
    return f"{VERSION}.{payload}.{_mac(secret, payload)}"


def verify(secret: bytes, token: str, *, image_id: str, method: str,
           now: float | None = None) -> LibraryClaims:
    """The token's claims if it is genuine, unexpired and for this image and method."""
    version, _, rest = token.partition(".")
    payload, _, mac = rest.partition(".")
    if version != VERSION or not payload or not mac:
        raise LibraryUnauthorized("malformed image library token")
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        raise LibraryUnauthorized("image library token has a bad signature")
    try:
        claims = _decoder.decode(_unb64(payload))
    except (ValueError, msgspec.DecodeError):
        raise LibraryUnauthorized("malformed image library token") from None
    if claims.exp < (now if now is not None else time.time()):
        raise LibraryUnauthorized("image library token expired")
    if claims.img != image_id or claims.m != _method(method):
        raise LibraryUnauthorized("image library token is for another image or method")
    return claims


def bearer(token: str) -> dict[str, str]:
    """The request header carrying ``token``."""
    return {"Authorization": f"Bearer {token}"}


def _method(method: str) -> str:
    method = method.upper()
    return "GET" if method == "HEAD" else method


def secret_path(settings: Settings) -> Path:
    """``LQ_IMAGE_LIBRARY_SECRET_FILE``, else ``<data_dir>/image-library.key``."""
    return Path(settings.image_library_secret_file or settings.data_path / SECRET_FILE)


def load_or_create_secret(settings: Settings) -> bytes:
    """The shared secret; created (0600, 32 random bytes) when the file does not exist yet.

    Blocking file I/O: call at start-up or through ``asyncio.to_thread``.
    """
    return load_or_create_secret_file(secret_path(settings))


def load_or_create_secret_file(path: Path) -> bytes:
    """The secret in ``path``, created first if absent (``lq-local`` does so for all services)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: services starting together cannot both write (one reads the other's).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes().strip()
        if len(secret) < 16:
            raise RuntimeError(f"{path} holds no usable secret (fewer than 16 bytes)") from None
        return secret
    secret = secrets.token_urlsafe(32).encode()
    with os.fdopen(fd, "wb") as f:
        f.write(secret + b"\n")
    return secret
