"""The node agent as its console script: SIGTERM drains, withdraws the node and exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from limiquantix.common import nats_auth, nats_client, subjects
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.settings import load
from limiquantix.common.vm_store import VmStore
from limiquantix.common.vms import VmState
from tests.support.disks import make_qcow2
from tests.support.flows import unique_name
from tests.support.node_agent import AgentHarness


@contextlib.asynccontextmanager
async def running_client(server: NatsServer, node: str) -> AsyncIterator[AgentHarness]:
    """The harness's client side only (the agent runs as a separate process)."""
    async with nats_client.connect(server.url, name="test",
                                   creds=str(server.creds_for(nats_auth.API))) as nc:
        js = nc.jetstream()
        await nats_client.ensure_jetstream(js, heartbeat_interval_s=0.5)
        store = VmStore(await nats_client.bucket(js, subjects.VMS_BUCKET),
                        await nats_client.bucket(js, subjects.VM_NAMES_BUCKET))
        yield AgentHarness(settings=load({}, node_id=node, nats_url=server.url), nc=nc, js=js,
                           store=store)


async def test_sigterm_withdraws_the_node_and_exits_zero(
        nats_server: NatsServer, tmp_path: Path) -> None:
    node = unique_name("node")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LQ_")}
    env.update({"LQ_NATS_URL": nats_server.url, "LQ_DATA_DIR": str(tmp_path / "node"),
                "LQ_NATS_CREDS": str(await nats_server.add_node(node)),
                "LQ_NODE_ID": node, "LQ_LIBVIRT_URI": "test:///default",
                "LQ_HEARTBEAT_INTERVAL_S": "0.5", "LQ_LOG_FORMAT": "json"})
    script = Path(sys.executable).parent / "lq-node-agent"
    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        proc = await asyncio.create_subprocess_exec(str(script), env=env, stdout=out,
                                                    stderr=out)
    try:
        async with nats_client.connect(nats_server.url, name="test",
                                       creds=str(nats_server.creds_for(nats_auth.API))) as nc:
            js = nc.jetstream()
            await nats_client.ensure_jetstream(js, heartbeat_interval_s=0.5)
            nodes = await nats_client.bucket(js, subjects.NODES_BUCKET)
            async with asyncio.timeout(20):
                while True:
                    try:
                        if (await nodes.get(node)).value:
                            break
                    except Exception:
                        pass
                    await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0, log.read_text()[-2000:]
            try:
                gone = not (await nodes.get(node)).value
            except Exception:
                gone = True
            assert gone
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert b'"node agent ready"' in log.read_bytes()


async def _start_agent(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    script = Path(sys.executable).parent / "lq-node-agent"
    with open(log, "ab") as out:
        return await asyncio.create_subprocess_exec(str(script), env=env, stdout=out,
                                                    stderr=out)


@pytest.mark.parametrize("failpoint", ["after_overlay", "before_define", "before_start"])
async def test_agent_crashing_mid_create_finishes_it_after_restart(
        nats_server: NatsServer, tmp_path: Path, failpoint: str) -> None:
    """The process dies (as on a power cut) at a step of a create; the next one completes it."""
    node = unique_name("node")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LQ_")}
    env.update({"LQ_NATS_URL": nats_server.url, "LQ_DATA_DIR": str(tmp_path / "node"),
                "LQ_NATS_CREDS": str(await nats_server.add_node(node)),
                "LQ_NODE_ID": node, "LQ_LIBVIRT_URI": "test:///default",
                "LQ_HEARTBEAT_INTERVAL_S": "0.5", "LQ_COMMAND_ACK_WAIT_S": "2",
                "LQ_LOG_FORMAT": "json", "LQ_HOST_IMAGE_DIRS": str(tmp_path)})
    log = tmp_path / "agent.log"
    image = make_qcow2(tmp_path / "base.qcow2")
    async with running_client(nats_server, node) as client:
        crashing = await _start_agent({**env, "LQ_FAILPOINTS": f"{failpoint}=exit:137"}, log)
        try:
            vm = await client.new_vm(image)
            assert await asyncio.wait_for(crashing.wait(), 20) == 137
        finally:
            if crashing.returncode is None:
                crashing.kill()
                await crashing.wait()
        record = await client.store.find(vm.id)
        assert record is not None and record.state in (VmState.CREATING, VmState.STARTING)
        agent = await _start_agent(env, log)
        try:
            await client.wait_state(vm.id, VmState.RUNNING, timeout_s=30)
            async with asyncio.timeout(15):
                while await client.pending_commands():
                    await asyncio.sleep(0.1)
            files = sorted(p.name for p in (tmp_path / "node" / "images" / vm.id).iterdir())
            assert files == ["disk.qcow2", "domain.xml", "seed.iso"]
            record = await client.store.find(vm.id)
            assert record is not None and record.error is None
        finally:
            agent.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(agent.wait(), 20) == 0
