"""The fleet simulation (bench/fleet.py) at CI size: 50 real node agents in one process over
libvirt's test driver, two real gateways, a real NATS. It asserts the invariants, not timings:
every node online throughout, every VM running exactly once where its record says, no node
allocated past its capacity, every SSE subscriber given every event."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = [pytest.mark.stack, pytest.mark.timeout(150)]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fleet.py"


def fleet_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_fleet", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_fifty_simulated_nodes_run_every_vm_once_and_stay_online(tmp_path: Path) -> None:
    fleet = fleet_module()
    args = argparse.Namespace(nodes=50, vms=200, clients=10, gateways=2, sse=5, idle_s=1.0,
                              agent_procs=1, node_vcpus=8, node_memory_mib=8192,
                              max_seconds=60.0, vm_timeout=60.0, start_timeout=60.0,
                              rate=20.0)  # paced, as the latency-below-saturation runs are
    result = await fleet.drive(args, tmp_path)
    assert result["nodes_online_min"] == 50, result
    assert result["create_failures"] == {}, result
    assert result["vms"] == 200 and result["domains_total"] == 200, result
    assert result["vms_not_running"] == 0 and result["vms_not_exactly_once"] == 0, result
    assert result["nodes_over_capacity"] == 0, result
    spread = result["spread_vms_per_node"]
    assert spread["max"] - spread["min"] <= 2, spread  # placement spreads an even load
    assert result["sse_events_min"] == result["sse_events_max"] > 0, result
    # What the report says of the pacing and of where a create's time goes.
    assert result["offered_creates_per_s"] == 20.0 and result["sent_late"] >= 0, result
    assert set(result["create_stages_p99_s"]) == {
        "post->pending", "pending->creating", "creating->starting", "starting->running"}, result
    assert len(result["agents_loop_stall_max_ms"]) == 1, result  # one agents process
