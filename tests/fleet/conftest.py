"""Fixtures of the fleet tests: a real three-server NATS cluster on loopback (routes, one
JetStream store per server, the production identities and permissions)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from limiquantix.common.nats_server import NatsCluster


@pytest.fixture
async def nats_cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    """Three nats-servers routed to each other, JetStream meta leader elected."""
    async with NatsCluster(tmp_path / "nats", 3, auth_dir=tmp_path / "nats" / "auth",
                           log_dir=tmp_path / "logs") as cluster:
        yield cluster
