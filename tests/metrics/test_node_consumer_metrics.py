"""A node agent counts the commands it dead-letters and shows its consumer's backlog."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from limiquantix.common import subjects
from tests.support.node_agent import AgentHarness


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_an_invalid_command_is_counted_as_dead_lettered(harness: AgentHarness) -> None:
    before = value("lq_node_commands_dead_lettered_total", reason="invalid")
    await harness.js.publish(subjects.node_commands(harness.settings.effective_node_id),
                             b"\xff not json")
    async with asyncio.timeout(10):
        while value("lq_node_commands_dead_lettered_total", reason="invalid") == before:
            await asyncio.sleep(0.02)
    assert value("lq_node_commands_dead_lettered_total", reason="invalid") == before + 1
    consumer = subjects.node_consumer(harness.settings.effective_node_id)
    # The gauge exists for this node's consumer (nothing else is queued: 0 pending).
    assert REGISTRY.get_sample_value("lq_jetstream_consumer_pending_messages",
                                     {"consumer": consumer}) == 0
