"""The node agent's trust boundary: what it decodes, the paths it builds, the files it writes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from limiquantix.common import subjects
from limiquantix.common.commands import DeleteVm
from limiquantix.common.events import VmDeleted
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.vms import VmState
from tests.node_agent.conftest import AgentHarness, agent_settings, make_qcow2, running_agent


@pytest.fixture
async def agent(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[AgentHarness]:
    async with running_agent(agent_settings(nats_server.url, tmp_path / "node")) as h:
        yield h


async def _collect(h: AgentHarness, subject: str) -> list[Msg]:
    seen: list[Msg] = []

    async def keep(msg: Msg) -> None:
        seen.append(msg)
    await h.nc.subscribe(subject, cb=keep)
    await h.nc.flush()
    return seen


async def _until(predicate: object, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_traversal_delete_is_terminated_and_touches_nothing_outside_the_root(
        agent: AgentHarness, tmp_path: Path) -> None:
    """``vm.delete`` of ``../../canary`` on the node's subject: terminated, dead-lettered,
    the directory it names survives, and the agent goes on to handle the next command."""
    canary = tmp_path / "canary"  # data_dir/images/../../canary
    canary.mkdir()
    (canary / "keep").write_text("still here")
    assert (agent.data_dir / "images" / "../../canary").resolve() == canary.resolve()
    consumer = subjects.node_consumer(agent.node_id)
    terminated = await _collect(
        agent, f"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{subjects.COMMANDS_STREAM}.{consumer}")
    dead = await _collect(agent, subjects.node_dead_letters(agent.node_id))
    raw = b'{"type":"vm.delete","command_id":"c-1","vm_id":"../../canary"}'
    await agent.js.publish(subjects.node_commands(agent.node_id), raw)
    await agent.js.publish(subjects.node_commands(agent.node_id), b"\xff not json")

    await _until(lambda: len(terminated) == 2 and len(dead) == 2)
    assert dead[0].data == raw
    assert dead[0].headers is not None and "vm_id" in dead[0].headers["Lq-Reason"]
    assert (canary / "keep").read_text() == "still here"
    info = await agent.js.consumer_info(subjects.COMMANDS_STREAM, consumer)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0
    assert await agent.pending_commands() == 0
    assert agent.task is not None and not agent.task.done()

    vm = await agent.new_vm(make_qcow2(tmp_path / "base.qcow2"))  # the agent still works
    await agent.wait_state(vm.id, VmState.RUNNING)
    await agent.send(DeleteVm(command_id=uuid.uuid4().hex, vm_id=vm.id))
    await agent.wait_event(lambda e: isinstance(e, VmDeleted) and e.vm_id == vm.id)
    assert not agent.vm_dir(vm.id).exists() and (canary / "keep").exists()


async def test_delete_of_an_unknown_vm_removes_nothing(agent: AgentHarness) -> None:
    """A well-formed delete for a VM the cluster does not know leaves its directory alone."""
    stranger = str(uuid.uuid4())
    folder = agent.data_dir / "images" / stranger
    folder.mkdir(parents=True)
    (folder / "disk.qcow2").write_bytes(b"not ours to judge")
    await agent.send(DeleteVm(command_id=uuid.uuid4().hex, vm_id=stranger))
    async with asyncio.timeout(10):
        while await agent.pending_commands():
            await asyncio.sleep(0.02)
    assert (folder / "disk.qcow2").exists()
