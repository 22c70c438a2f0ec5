"""Security tests run against NATS as in production (the root ``nats_server`` fixture: one
identity per service, anonymous clients refused) when it has authentication, else plain.

Fixtures: the image library in-process with its own identity, an image library client and the
gateway app (aiohttp's test server) as the ``api`` identity, a local origin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from aiohttp.test_utils import TestClient, TestServer
from nats.aio.client import Client

from limiquantix.api.app import init
from limiquantix.common import nats_client, settings
from limiquantix.common.nats_server import NatsServer
from limiquantix.image_library.client import ImageLibraryClient
from tests.support.images import Library
from tests.support.security import HEARTBEAT_S, TOKEN, MakeGateway, creds, make_library


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A connection as the gateway (the identity that asks the image library)."""
    client = await nats.connect(**nats_server.connect_options("api"))
    await nats_client.ensure_jetstream(client.jetstream(), heartbeat_interval_s=HEARTBEAT_S)
    yield client
    await client.drain()


@pytest.fixture
def client(nc: Client) -> ImageLibraryClient:
    return ImageLibraryClient(nc, timeout_s=10)


@pytest.fixture
async def library(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[Library]:
    running = make_library(tmp_path / "library", nats_server)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def strict_library(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[Library]:
    """The library as installed: no non-public network allowed except 127.0.0.2 (the tests'
    stand-in for a public server), so 127.0.0.1, where our services listen, stays refused."""
    running = make_library(tmp_path / "library", nats_server,
                           import_allowed_networks="127.0.0.2/32")
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def make_gateway(nats_server: NatsServer, tmp_path: Path
                       ) -> AsyncIterator[MakeGateway]:
    """The gateway app on a test server, master token TOKEN; stopped at the end."""
    started: list[TestClient] = []  # type: ignore[type-arg]

    async def make(**overrides: object) -> TestClient:  # type: ignore[type-arg]
        values: dict[str, object] = {
            "nats_url": nats_server.url, "data_dir": str(tmp_path / "api"), "api_token": TOKEN,
            "heartbeat_interval_s": HEARTBEAT_S, "request_timeout_s": 5.0,
            **creds(nats_server, "api"),
        }
        values.update(overrides)
        test_client = TestClient(TestServer(init(settings.load({}, **values))))
        await test_client.start_server()
        started.append(test_client)
        return test_client

    yield make
    for test_client in started:
        await test_client.close()
