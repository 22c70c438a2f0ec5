"""The recorder's compare-and-set: a remembered revision is a fast path, never a blind write."""

from __future__ import annotations

from pathlib import Path

import msgspec

from limiquantix.common.vms import VmState
from limiquantix.node_agent.recorder import Recorder
from tests.support.disks import make_qcow2
from tests.support.node_agent import AgentHarness


async def _recorder(h: AgentHarness) -> Recorder:
    return Recorder(h.js, h.store, h.node_id)


async def test_a_write_by_someone_else_is_never_overwritten(harness: AgentHarness,
                                                            tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    recorder = await _recorder(harness)
    assert (await recorder.find(vm.id)) is not None  # revision remembered
    # The API records a transitional state meanwhile (its own compare-and-set).
    await harness.store.update(vm.id, lambda r: msgspec.structs.replace(r, state=VmState.STOPPING))
    # A late writer that only applies from running must see the new state, not the old one.
    late = await recorder.transition(vm.id, VmState.READY,
                                     only_from=frozenset({VmState.RUNNING}))
    assert late is None
    record = await harness.store.find(vm.id)
    assert record is not None and record.state == VmState.STOPPING
    # A patch lands on the fresh record and keeps the other writer's change.
    patched = await recorder.patch(vm.id, lambda r: msgspec.structs.replace(r, ssh_command="x"))
    assert patched is not None and patched.state == VmState.STOPPING
    record = await harness.store.find(vm.id)
    assert record is not None and (record.state, record.ssh_command) == (VmState.STOPPING, "x")


async def test_successive_writes_use_the_remembered_revision(harness: AgentHarness,
                                                             tmp_path: Path) -> None:
    vm = await harness.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await harness.wait_state(vm.id, VmState.RUNNING)
    recorder = await _recorder(harness)
    await recorder.find(vm.id)
    reads = 0
    kv = recorder.store.records.kv  # count the reads that reach the KV bucket
    original = kv.get

    async def counting(key: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal reads
        reads += 1
        return await original(key, *args, **kwargs)
    kv.get = counting  # type: ignore[method-assign]
    for n in range(3):
        assert await recorder.patch(
            vm.id, lambda r, n=n: msgspec.structs.replace(r, ssh_command=f"v{n}")) is not None
    assert reads == 0
    record = await harness.store.find(vm.id)
    assert record is not None and record.ssh_command == "v2"
