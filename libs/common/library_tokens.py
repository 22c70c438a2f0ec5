"""Short-lived signed tokens for the image library's HTTP endpoints (files and uploads).

The library's HTTP port is reachable by whoever reaches the management network (on Kubernetes,
any pod), so every request carries ``Authorization: Bearer <token>``: an HMAC-SHA256, keyed
with a secret shared by the gateway, the node agents and the library, over
``{service, image id, method, expiry, subject}``. A token opens one image for one method for a
few minutes; ``subject`` names who asked (the gateway's caller), so an upload record is written
only by its creator. Why HMAC over a shared file rather than tokens issued over NATS: no round
trip per download, and nothing new to keep running; the secret is a Kubernetes Secret or, in
local mode, a 0600 file ``lq-local`` generates.

Node agents do not get the secret: they get the *node key*, derived from it
(:func:`node_key`; ``python -m limiquantix.common.library_tokens node-key SECRET_FILE``), and
the library takes a token signed with the node key only for ``GET`` and only with a ``node:``
service. So a node's key (hypervisors are the most exposed hosts) reads images, which a node
must, but cannot write into anyone's upload or pass for the gateway.
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

from limiquantix.common.errors import LimiquantixError
from limiquantix.common.model import Model
from limiquantix.common.settings import Settings

SECRET_FILE = "image-library.key"
NODE_KEY_FILE = "image-library.node.key"  # what lq-local gives its node agents
DEFAULT_TTL_S = 300.0  # long enough to start a download; a started transfer is not re-checked
VERSION = "lqi1"
NODE_SERVICE_PREFIX = "node:"
NODE_KEY_PREFIX = b"lqnode1."


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


def node_key(secret: bytes) -> bytes:
    """The key node agents sign with: derived from the secret, good for ``GET`` only.

    A node key given as a node's secret file is used as is; a node given the full secret
    (one host, one data dir) derives it.
    """
    if secret.startswith(NODE_KEY_PREFIX):
        return secret
    digest = hmac.new(secret, b"lq image library node key v1", hashlib.sha256).digest()
    return NODE_KEY_PREFIX + _b64(digest).encode()


def verify(secret: bytes, token: str, *, image_id: str, method: str,
           now: float | None = None) -> LibraryClaims:
    """The token's claims if it is genuine, unexpired and for this image and method.

    ``secret`` is the library's; a ``node:`` token is checked against :func:`node_key`.
    """
    version, _, rest = token.partition(".")
    payload, _, mac = rest.partition(".")
    if version != VERSION or not payload or not mac:
        raise LibraryUnauthorized("malformed image library token")
    try:
        # Read before the signature is checked only to pick the key; trusted only after.
        claims = _decoder.decode(_unb64(payload))
    except (ValueError, msgspec.DecodeError):
        raise LibraryUnauthorized("malformed image library token") from None
    from_node = claims.svc.startswith(NODE_SERVICE_PREFIX)
    if not hmac.compare_digest(mac, _mac(node_key(secret) if from_node else secret, payload)):
        raise LibraryUnauthorized("image library token has a bad signature")
    if from_node and claims.m != "GET":
        raise LibraryUnauthorized("node tokens only read images")
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
    if not path.exists():
        # Written whole under a private name, then linked into place: callers racing at start
        # (parallel creates, services starting together) never read a file still empty, and
        # the link fails for all but the first (they read the winner's).
        candidate = secrets.token_urlsafe(32).encode()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(candidate + b"\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    secret = path.read_bytes().strip()
    if len(secret) < 16:
        raise RuntimeError(f"{path} holds no usable secret (fewer than 16 bytes)")
    return secret


def write_node_key_file(path: Path, secret: bytes) -> None:
    """Write the node key of ``secret`` to ``path`` (0600; replaced atomically)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(node_key(secret) + b"\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "node-key":
        sys.exit("usage: python -m limiquantix.common.library_tokens node-key SECRET_FILE")
    print(node_key(Path(sys.argv[2]).read_bytes().strip()).decode())
