"""Where the API is and which token to send: flags, then environment, then the local data dir."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from limiquantix.cli.errors import NoToken, UsageError

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_DATA_DIR = "/var/lib/limiquantix"
TOKEN_FILE = "api-token"


@dataclass(frozen=True)
class Config:
    url: str
    token: str
    token_source: str  # "--token", "LQ_API_TOKEN" or the file's path (shown in errors)


def token_file(environ: Mapping[str, str]) -> Path:
    """``<LQ_DATA_DIR or /var/lib/limiquantix>/api-token``, as the API writes it."""
    return Path(environ.get("LQ_DATA_DIR") or DEFAULT_DATA_DIR) / TOKEN_FILE


def resolve(url: str | None, token: str | None,
            environ: Mapping[str, str] | None = None) -> Config:
    """Flags win over ``LQ_URL``/``LQ_API_TOKEN``, which win over the local defaults."""
    env = os.environ if environ is None else environ
    base = (url or env.get("LQ_URL") or DEFAULT_URL).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"API URL {base!r} must start with http:// or https://")
    if token:
        return Config(base, token, "--token")
    if env.get("LQ_API_TOKEN"):
        return Config(base, env["LQ_API_TOKEN"], "LQ_API_TOKEN")
    path = token_file(env)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise NoToken(f"no API token: {path} does not exist") from None
    except PermissionError:
        raise NoToken(f"no API token: {path} is not readable by this user",
                      hint="Run as a user who can read it (e.g. sudo), or pass --token.") from None
    if not text:
        raise NoToken(f"no API token: {path} is empty")
    return Config(base, text, str(path))
