"""Gateway tests: a real nats-server per test and the app on aiohttp's test server.

There is no node agent here: a "node" is a real heartbeat entry written into the ``nodes``
bucket with that node's NATS identity, and commands are read back from the JetStream commands
stream as the gateway. NATS runs with production permissions (root ``nats_server`` fixture).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from aiohttp.test_utils import TestClient, TestServer

from limiquantix.api.app import init
from limiquantix.common import nats_auth, nats_client, settings
from limiquantix.common.nats_server import NatsServer
from tests.support.api_gateway import HEARTBEAT_S, TOKEN, Gateway, MakeGateway


@pytest.fixture
async def make_gateway(nats_server: NatsServer, tmp_path: Path
                       ) -> AsyncIterator[MakeGateway]:
    """Start gateways (each its own app) on the same NATS; all stopped at the end."""
    started: list[Gateway] = []

    async def make(**overrides: object) -> Gateway:
        values: dict[str, object] = {
            "nats_url": nats_server.url, "data_dir": str(tmp_path / "data"),
            "api_token": TOKEN, "heartbeat_interval_s": HEARTBEAT_S, "request_timeout_s": 2.0,
            "nats_creds": str(nats_server.creds_for(nats_auth.API)),
            "host_image_dirs": "/",  # these gateways have no library: images are node paths
        }
        values.update(overrides)
        app = init(settings.load({}, **values))
        client = TestClient(TestServer(app))
        await client.start_server()
        nc = await nats.connect(**nats_server.connect_options(nats_auth.API))
        gateway = Gateway(client=client, nc=nc, js=nc.jetstream(), token=str(values["api_token"]),
                          server=nats_server)
        started.append(gateway)
        await nats_client.ensure_jetstream(nc.jetstream(), heartbeat_interval_s=HEARTBEAT_S)
        return gateway

    yield make
    for gateway in started:
        await gateway.client.close()
        for nc in (gateway.nc, *gateway.nodes.values()):
            await nc.close()


@pytest.fixture
async def gw(make_gateway: MakeGateway) -> Gateway:
    return await make_gateway()
