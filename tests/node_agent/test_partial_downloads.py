"""Partial image downloads a killed agent left behind are removed when the agent starts again
(issue 11 row 11: 183 MiB of `.part` stayed after a node kill and the VM's delete)."""

from __future__ import annotations

import os

from tests.support.node_agent import AgentHarness


async def test_a_restarted_agent_removes_the_partial_downloads_of_its_previous_run(
        harness: AgentHarness) -> None:
    await harness.crash()  # as kill -9: nothing cleaned up on the way out
    partial = harness.data_dir / "cloud-images" / ".partial"
    partial.mkdir(parents=True, exist_ok=True)
    orphan = partial / f"{'e' * 64}.part"
    orphan.write_bytes(os.urandom(1 << 20))
    await harness.start()
    assert not orphan.exists()
    assert list(partial.iterdir()) == []
