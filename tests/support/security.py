"""Security tests' helpers: the master token, the image library and the gateway app with the
identities NATS knows them by (when it authenticates)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from limiquantix.common.nats_server import NatsServer
from tests.support.images import Library

TOKEN = "security-master-token-0123456789"
HEARTBEAT_S = 1.0


def creds(server: NatsServer, identity: str) -> dict[str, str]:
    """The ``nats_creds`` setting of ``identity`` when the server authenticates."""
    return {"nats_creds": str(server.creds_for(identity))} if server.auth else {}


def make_library(root: Path, server: NatsServer, **overrides: Any) -> Library:
    return Library(root, server.url, setup_connect=server.connect_options("api"),
                   **creds(server, "image-library"), **overrides)


MakeGateway = Callable[..., Awaitable[TestClient]]  # type: ignore[type-arg]


MASTER = {"Authorization": f"Bearer {TOKEN}"}
