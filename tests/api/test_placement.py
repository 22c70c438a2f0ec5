"""Placement policy: explicit node wins, else most free memory after; VM records are the load."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from limiquantix.api.errors import NoCapacity, UnknownNode
from limiquantix.api.placement import allocations, loads, place
from limiquantix.common.nodes import NodeStatus, NodeWarning, capacity
from limiquantix.common.vms import VmRecord, VmState

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def node(node_id: str, *, vcpus: int = 8, memory: int = 8192) -> NodeStatus:
    return NodeStatus(id=node_id, vcpus=vcpus, memory_mib=memory, heartbeat_at=NOW)


def vm(vm_id: str, node_id: str, *, vcpus: int = 1, memory: int = 1024,
       state: VmState = VmState.PENDING) -> VmRecord:
    return VmRecord(id=vm_id, name=vm_id, node=node_id, state=state, image="/i", vcpus=vcpus,
                    memory_mib=memory, disk_gib=1, created_at=NOW, updated_at=NOW)


def test_most_free_memory_after_the_request_wins() -> None:
    nodes = [node("a", memory=4096), node("b", memory=8192)]
    used = allocations([vm("v0", "b", memory=2048)])
    assert place(vcpus=1, memory_mib=1024, nodes=nodes, used=used) == "b"


def test_a_node_without_the_vcpus_is_skipped_even_with_more_memory() -> None:
    nodes = [node("big", memory=65536, vcpus=2), node("small", memory=2048)]
    used = allocations([vm("v0", "big", vcpus=2, memory=1024)])
    assert place(vcpus=1, memory_mib=1024, nodes=nodes, used=used) == "small"


def test_ties_go_to_more_free_vcpus_then_the_first_id() -> None:
    assert place(vcpus=1, memory_mib=1, nodes=[node("b", vcpus=4), node("a", vcpus=8)],
                 used={}) == "a"
    assert place(vcpus=1, memory_mib=1, nodes=[node("b"), node("ab"), node("a")], used={}) == "a"


def test_every_vm_record_on_a_node_counts_whatever_its_state() -> None:
    """Records are the truth of what was placed; a heartbeat may lag a burst of creates."""
    nodes = [node("a", memory=4096), node("b", memory=3072)]
    placed = [vm("v1", "a", memory=1024), vm("v2", "a", memory=1024, state=VmState.RUNNING),
              vm("v3", "a", vcpus=2, memory=512, state=VmState.STOPPED)]
    assert place(vcpus=1, memory_mib=512, nodes=nodes, used=allocations(placed)) == "b"
    load = loads(nodes, allocations(placed))["a"]
    assert (load.memory_mib, load.vcpus, load.free_memory_mib) == (2560, 4, 1536)


def test_vms_of_nodes_that_are_not_online_do_not_matter() -> None:
    used = allocations([vm("v1", "gone", memory=4096)])
    assert place(vcpus=1, memory_mib=4096, nodes=[node("a", memory=4096)], used=used) == "a"


def test_explicit_node_wins_when_it_fits() -> None:
    nodes = [node("a", memory=2048), node("b", memory=65536)]
    assert place(vcpus=1, memory_mib=1024, nodes=nodes, used={}, explicit="a") == "a"


def test_explicit_node_that_is_not_online_is_unknown_node() -> None:
    with pytest.raises(UnknownNode) as caught:
        place(vcpus=1, memory_mib=1, nodes=[node("a")], used={}, explicit="zz")
    assert caught.value.details["online"] == ["a"] and caught.value.status == 422


def test_explicit_node_that_is_full_is_no_capacity() -> None:
    with pytest.raises(NoCapacity) as caught:
        place(vcpus=1, memory_mib=4096, nodes=[node("a", memory=2048)], used={}, explicit="a")
    assert caught.value.status == 409 and "2048 MiB" in caught.value.message


def test_no_fit_names_the_largest_free_memory_and_vcpus() -> None:
    nodes = [node("a", memory=3000, vcpus=2), node("b", memory=1000, vcpus=6)]
    with pytest.raises(NoCapacity) as caught:
        place(vcpus=4, memory_mib=2000, nodes=nodes, used={})
    message = caught.value.message
    assert "3000 MiB (node 'a')" in message and "6 (node 'b')" in message
    assert caught.value.details == {"free_memory_mib": 3000, "free_vcpus": 6}
    assert caught.value.code == "no_capacity"


def test_no_node_online_is_no_capacity_with_a_hint_to_start_one() -> None:
    with pytest.raises(NoCapacity) as caught:
        place(vcpus=1, memory_mib=1, nodes=[], used={})
    assert "no node is online" in caught.value.message and "node agent" in caught.value.hint


def test_capacity_applies_the_ratios_and_the_reserved_host_memory() -> None:
    assert capacity(2, 24576, cpu_ratio=4.0, memory_ratio=1.0,
                    reserved_memory_mib=512) == (8, 24064)
    assert capacity(2, 256, cpu_ratio=1.0, memory_ratio=1.5, reserved_memory_mib=512) == (2, 0)


def test_five_one_vcpu_vms_fit_on_a_two_core_node_with_the_default_ratio() -> None:
    two_cores = NodeStatus(id="n", vcpus=2, memory_mib=8192, vcpus_capacity=8,
                           memory_mib_capacity=7680, cpu_allocation_ratio=4.0, heartbeat_at=NOW)
    placed = [vm(f"v{i}", "n", vcpus=1, memory=256) for i in range(5)]
    assert place(vcpus=1, memory_mib=256, nodes=[two_cores], used=allocations(placed)) == "n"
    full = [vm(f"v{i}", "n", vcpus=1, memory=256) for i in range(8)]
    with pytest.raises(NoCapacity) as refused:
        place(vcpus=1, memory_mib=256, nodes=[two_cores], used=allocations(full))
    assert "LQ_CPU_ALLOCATION_RATIO" in refused.value.hint
    assert "LQ_MEMORY_ALLOCATION_RATIO" not in refused.value.hint  # memory was not short


def test_a_failed_vm_that_released_its_resources_takes_no_capacity() -> None:
    released = msgspec.structs.replace(vm("gone", "n", vcpus=8, state=VmState.ERROR),
                                       holds_resources=False)
    assert allocations([released, vm("v", "n", vcpus=2)]) == {"n": (2, 1024)}


def test_automatic_placement_skips_a_node_whose_libvirt_is_away() -> None:
    away = NodeStatus(id="a", vcpus=8, memory_mib=65536, heartbeat_at=NOW, warnings=(
        NodeWarning(code="libvirt_disconnected", message="reconnecting"),))
    assert place(vcpus=1, memory_mib=64, nodes=[away, node("b")], used={}) == "b"
    assert place(vcpus=1, memory_mib=64, nodes=[away], used={}, explicit="a") == "a"
    with pytest.raises(NoCapacity):
        place(vcpus=1, memory_mib=64, nodes=[away], used={})
