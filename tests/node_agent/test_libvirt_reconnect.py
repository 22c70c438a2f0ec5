"""The node's libvirt connection comes back after it is lost (issue 11 row 12).

libvirtd is shared on this machine, so no test restarts it. On the test driver the tests close
the agent's own connection from the test side (libvirt.open is wrapped to hand the test the
agent's connection) and, while "libvirtd is down", make re-opening fail the way it does then: a
connection to a socket nobody listens on. On the real libvirtd (``e2e``), libvirtd itself drops
the agent's connection (``virt-admin client-disconnect``), as a restart does; what stays
untested is a libvirtd that hangs (keepalive) or stays down on the real daemon.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import libvirt
import pytest

from limiquantix.common import nats_client, subjects
from limiquantix.common.commands import StartVm, StopVm
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.nodes import NodeStatus, node_decoder
from limiquantix.common.vms import VmState
from limiquantix.node_agent.libvirt_host import LIVENESS_POLL_S
from tests.support.disks import make_qcow2
from tests.support.node_agent import AgentHarness, agent_settings, running_agent

QEMU_URI = "qemu:///system"
DEAD_SOCKET_URI = "test+unix:///default?socket=/nonexistent/libvirt-sock"


@dataclass
class LibvirtOpens:
    """Every connection libvirt.open made in this process; ``down`` makes new ones fail."""

    opened: list[libvirt.virConnect] = field(default_factory=list)
    down: bool = False
    event_callbacks: dict[int, list[int]] = field(default_factory=dict)  # id(conn) -> ids

    def last(self) -> libvirt.virConnect:
        return self.opened[-1]


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> LibvirtOpens:
    real_open = libvirt.open
    seen = LibvirtOpens()

    def open_(uri: str | None = None) -> libvirt.virConnect:
        conn = real_open(DEAD_SOCKET_URI if seen.down else uri)  # down: a real failure
        seen.opened.append(conn)
        return conn

    real_register = libvirt.virConnect.domainEventRegisterAny

    def register(conn: libvirt.virConnect, *args: object) -> int:
        callback_id: int = real_register(conn, *args)
        seen.event_callbacks.setdefault(id(conn), []).append(callback_id)
        return callback_id

    monkeypatch.setattr(libvirt, "open", open_)
    monkeypatch.setattr(libvirt.virConnect, "domainEventRegisterAny", register)
    return seen


@pytest.fixture
async def agent(nats_server: NatsServer, tmp_path: Path, opens: LibvirtOpens
                ) -> AsyncIterator[AgentHarness]:
    settings = agent_settings(nats_server.url, tmp_path / "node", transient_retry_s=30.0)
    async with running_agent(nats_server, settings) as harness:
        yield harness


async def _status(agent: AgentHarness) -> NodeStatus:
    nodes = await nats_client.bucket(agent.js, subjects.NODES_BUCKET)
    entry = await nodes.get(agent.node_id)
    assert entry.value is not None
    return node_decoder.decode(entry.value)


async def _wait_warning(agent: AgentHarness, present: bool, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            codes = {w.code for w in (await _status(agent)).warnings}
            if ("libvirt_disconnected" in codes) == present:
                return
            await asyncio.sleep(0.05)


def _lose_connection(opens: LibvirtOpens) -> None:
    """libvirtd "stops": the agent's connection dies, and reconnecting fails for now."""
    opens.down = True
    conn = opens.last()
    # Event registrations hold the connection open; a dying libvirtd takes them along.
    for callback_id in opens.event_callbacks.pop(id(conn), []):
        conn.domainEventDeregisterAny(callback_id)
    assert conn.close() == 0  # gone for good: every later call fails on it


async def test_a_lost_connection_is_reopened_and_a_create_made_meanwhile_completes(
        agent: AgentHarness, opens: LibvirtOpens, tmp_path: Path) -> None:
    image = make_qcow2(tmp_path / "base.qcow2")
    first = await agent.new_vm(image)
    await agent.wait_state(first.id, VmState.RUNNING)
    _lose_connection(opens)
    await _wait_warning(agent, present=True)
    second = await agent.new_vm(image)  # arrives while libvirt is away: it waits
    await asyncio.sleep(1.0)  # deliberate: libvirt stays away a while; the create must not fail
    waiting = await agent.store.find(second.id)
    assert waiting is not None and waiting.state != VmState.ERROR, waiting
    opens.down = False  # libvirtd is back
    await agent.wait_state(second.id, VmState.RUNNING, timeout_s=20)
    await _wait_warning(agent, present=False)
    assert agent.task is not None and not agent.task.done()
    # The new connection carries lifecycle events again: a power-off outside is recorded.
    dom = opens.last().lookupByUUIDString(first.id)
    dom.destroy()
    record = await agent.wait_state(first.id, VmState.STOPPED)
    assert record.error is None


async def test_an_outage_past_the_retry_deadline_fails_the_action_retryably(
        nats_server: NatsServer, tmp_path: Path, opens: LibvirtOpens) -> None:
    settings = agent_settings(nats_server.url, tmp_path / "node", transient_retry_s=1.5)
    async with running_agent(nats_server, settings) as agent:
        vm = await agent.new_vm(make_qcow2(tmp_path / "base.qcow2"))
        await agent.wait_state(vm.id, VmState.RUNNING)
        _lose_connection(opens)
        await _wait_warning(agent, present=True)
        await agent.send(StopVm(command_id=uuid.uuid4().hex, vm_id=vm.id, force=True))
        failed = await agent.wait_record(
            vm.id, lambda r: r is not None and r.error is not None, timeout_s=15)
        assert failed is not None and failed.error is not None
        assert failed.error.code == "libvirt_unavailable"
        assert "libvirt_disconnected" in failed.error.hint
        assert agent.task is not None and not agent.task.done()  # no crash
        opens.down = False
        await _wait_warning(agent, present=False)
        await agent.send(StartVm(command_id=uuid.uuid4().hex, vm_id=vm.id))
        await agent.send(StopVm(command_id=uuid.uuid4().hex, vm_id=vm.id, force=True))
        await agent.wait_record(
            vm.id, lambda r: r is not None and r.state == VmState.STOPPED and r.error is None)


def _our_libvirtd_clients() -> set[str]:
    """Ids of libvirtd's clients that are this process (the agent under test runs here)."""
    listing = subprocess.run(["virt-admin", "client-list", "libvirtd"], capture_output=True,
                             text=True, check=True).stdout
    ours = set()
    for line in listing.splitlines()[2:]:
        client = line.split()[0] if line.split() else ""
        info = subprocess.run(["virt-admin", "client-info", "libvirtd", client],
                              capture_output=True, text=True).stdout
        if re.search(rf"unix_process_id\s*:\s*{os.getpid()}\b", info):
            ours.add(client)
    return ours


@pytest.mark.e2e
async def test_libvirtd_dropping_the_connection_fires_the_close_callback_and_the_agent_returns(
        nats_server: NatsServer, qemu_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On the real libvirtd, which stays up (it is shared): it disconnects the agent as a
    restart would (virt-admin client-disconnect), and libvirt's close callback reports it."""
    if subprocess.run(["virsh", "-c", QEMU_URI, "uri"], capture_output=True).returncode:
        pytest.skip("libvirtd is not running (bash scripts/libvirtd.sh)")
    settings = agent_settings(nats_server.url, qemu_tmp / "node", libvirt_uri=QEMU_URI,
                              virt_type="auto")
    # Earlier tests in this process may hold libvirt connections of their own: the agent's is
    # the one that appears with it.
    others = _our_libvirtd_clients()
    async with running_agent(nats_server, settings) as agent:
        image = make_qcow2(qemu_tmp / "images" / "base.qcow2", "64M")
        (qemu_tmp / "images").chmod(0o755)
        vm = await agent.new_vm(image, memory_mib=128)
        await agent.wait_state(vm.id, VmState.RUNNING, timeout_s=90)
        before = _our_libvirtd_clients() - others
        assert len(before) == 1, before  # the agent's one connection
        subprocess.run(["virt-admin", "client-disconnect", "libvirtd", *before], check=True)
        async with asyncio.timeout(LIVENESS_POLL_S):  # sooner than the poll: the callback
            while "closed by libvirt" not in capsys.readouterr().out:
                await asyncio.sleep(0.05)
        async with asyncio.timeout(15):
            while not (after := _our_libvirtd_clients() - others) or after == before:
                await asyncio.sleep(0.2)
        # Commands work on the new connection, and its events are followed.
        await agent.send(StopVm(command_id=uuid.uuid4().hex, vm_id=vm.id, force=True))
        await agent.wait_state(vm.id, VmState.STOPPED, timeout_s=30)
        subprocess.run(["virsh", "-c", QEMU_URI, "start", vm.id], check=True,
                       capture_output=True)
        await agent.wait_state(vm.id, VmState.RUNNING, timeout_s=30)
