"""What an agent reading does to a real record (NATS KV, the node's recorder): fields written,
events and phases published, Windows made ready by its agent, address changes announced."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import msgspec

from limiquantix.common.events import VmAddressesChanged, VmAgentChanged, VmPhaseReached
from limiquantix.common.vms import GuestAddress, GuestOsInfo, VmState
from limiquantix.node_agent.guest_agent import AgentReport, GuestAgents
from limiquantix.node_agent.recorder import Recorder
from tests.support.disks import make_qcow2
from tests.support.node_agent import AgentHarness

OS = GuestOsInfo(name="Debian GNU/Linux 12", kernel="6.1.0", hostname="vm")


def _agents(h: AgentHarness) -> GuestAgents:
    ctx = SimpleNamespace(recorder=Recorder(h.js, h.store, h.node_id), settings=h.settings)
    return GuestAgents(ctx, lambda _: None, list)  # type: ignore[arg-type]


def _report(*addresses: str) -> AgentReport:
    return AgentReport(connected=True, version="7.2.0", commands=("guest-exec",), os=OS,
                       addresses=tuple(GuestAddress(address=a, interface="eth0", source="agent")
                                       for a in addresses))


async def test_an_agent_reading_fills_the_record_and_announces_changes(
        harness: AgentHarness, tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    agents = _agents(harness)
    record = await agents.record(vm.id, _report("10.0.2.15"))
    assert record is not None and record.guest.agent.connected
    assert record.guest.os == OS and record.guest.addresses == ("10.0.2.15",)
    await harness.wait_event(lambda e: isinstance(e, VmAgentChanged) and e.vm_id == vm.id
                             and e.connected)
    await harness.wait_event(lambda e: isinstance(e, VmPhaseReached) and e.vm_id == vm.id
                             and e.phase == "network")
    # The same reading again writes nothing; nor does a busy agent that answered nothing.
    assert await agents.record(vm.id, _report("10.0.2.15")) is None
    assert await agents.record(vm.id, AgentReport(connected=True, stale=True)) is None
    # A new lease is an event with the old and new addresses.
    await agents.record(vm.id, _report("10.0.2.16"))
    changed = await harness.wait_event(lambda e: isinstance(e, VmAddressesChanged)
                                       and e.vm_id == vm.id)
    assert isinstance(changed, VmAddressesChanged)
    assert (changed.previous, changed.addresses) == (("10.0.2.15",), ("10.0.2.16",))
    # The agent going away keeps the last reading, says so, and is an event.
    gone = await agents.record(vm.id, AgentReport(connected=False))
    assert gone is not None and not gone.guest.agent.connected and gone.guest.os == OS
    await harness.wait_event(lambda e: isinstance(e, VmAgentChanged) and e.vm_id == vm.id
                             and not e.connected)
    assert record.state == VmState.RUNNING  # a Linux VM's readiness is cloud-init's


async def test_a_windows_vm_is_ready_when_its_agent_connects(harness: AgentHarness,
                                                             tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    await harness.store.update(vm.id, lambda r: msgspec.structs.replace(r, os_type="windows"))
    await _agents(harness).record(vm.id, _report())
    ready = await harness.wait_state(vm.id, VmState.READY)
    assert ready.guest.phase == "ready" and ready.guest.ready_at is not None
    assert ready.guest.boot_seconds is not None and ready.guest.boot_seconds >= 0
    assert list(ready.guest.phases) == ["defined", "booting", "ready"]
