"""Fixtures of the node agent tests: a real nats-server, the agent (in this process, libvirt's
test driver), from tests/support/node_agent.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from limiquantix.common.nats_server import NatsServer
from tests.support.node_agent import AgentHarness, agent_settings, running_agent


@pytest.fixture
async def harness(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[AgentHarness]:
    """A running agent on the test driver; stopped cleanly (and its domains removed) after."""
    async with running_agent(nats_server, agent_settings(nats_server.url, tmp_path / "node")) as h:
        yield h
