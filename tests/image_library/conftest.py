"""Fixtures: a real nats-server, the image library's serve() in-process, a local origin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from limiquantix.common import nats_auth
from limiquantix.common.nats_server import NatsServer
from limiquantix.image_library.client import ImageLibraryClient
from tests.support.images import Library, library_on


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A connection as the gateway (the identity that asks the image library)."""
    client = await nats.connect(**nats_server.connect_options(nats_auth.API))
    yield client
    await client.drain()


@pytest.fixture
async def library(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[Library]:
    running = library_on(nats_server, tmp_path / "library")
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
def client(nc: Client) -> ImageLibraryClient:
    return ImageLibraryClient(nc, timeout_s=10)
