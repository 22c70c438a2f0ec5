"""NATS away while the node works (issue 11): the node's record writes and events wait for it
(LQ_TRANSIENT_RETRY_S) instead of failing the VM, so a create in flight still ends `running`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from limiquantix.common.events import VmActionFailed
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.vms import VmState
from tests.support.disks import make_qcow2
from tests.support.node_agent import agent_settings, running_agent

# Longer than nats-py's JetStream request timeout (5 s): every write in the gap times out.
OUTAGE_S = 8.0


async def test_a_create_in_flight_when_nats_restarts_ends_running_without_an_error(
        nats_server: NatsServer, tmp_path: Path) -> None:
    settings = agent_settings(nats_server.url, tmp_path / "node", transient_retry_s=60.0,
                              failpoints="before_define=sleep:1")
    async with running_agent(nats_server, settings) as agent:
        vm = await agent.new_vm(make_qcow2(tmp_path / "base.qcow2"))
        await agent.wait_state(vm.id, VmState.CREATING)
        await nats_server.stop()  # the create's next write (defined -> starting) meets no NATS
        await asyncio.sleep(OUTAGE_S)
        await nats_server.start()
        record = await agent.wait_state(vm.id, VmState.RUNNING, timeout_s=30)
        assert record.error is None
        assert not agent.events_of(vm.id, VmActionFailed)
        assert agent.task is not None and not agent.task.done()
