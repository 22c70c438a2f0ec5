"""The Origin check of console WebSockets (browsers send Origin; a page elsewhere must not connect).

Compared as ``scheme://host[:port]`` in lower case with default ports dropped, so
``http://Gw:80`` and ``http://gw`` are one origin.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalize(origin: str) -> str | None:
    """``scheme://host[:port]`` of an origin or URL, or None when it is not one (``null``)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def parse_allowed(setting: str) -> frozenset[str]:
    """The comma-separated ``LQ_CONSOLE_ORIGINS`` as normalized origins (invalid ones dropped)."""
    found = (normalize(item) for item in setting.split(",") if item.strip())
    return frozenset(origin for origin in found if origin)


def origin_allowed(
    origin: str | None,
    *,
    own: Iterable[str],
    allowed: frozenset[str],
    allow_missing: bool,
) -> bool:
    """True when ``origin`` is one of the gateway's own origins or an allowed one.

    ``own`` are the origins the request itself was made to (scheme + Host, the public URL).
    A missing Origin means a non-browser client; it passes only when ``allow_missing``.
    """
    if origin is None:
        return allow_missing
    wanted = normalize(origin)
    if wanted is None:
        return False
    if wanted in allowed:
        return True
    return any(normalize(candidate) == wanted for candidate in own)
