"""The three programs in examples/, run as a user would (subprocesses) against the real stack."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from limiquantix.client import Client
from limiquantix.common.vms import CreateVmRequest
from limiquantix.local.stack import Stack
from tests.support.disks import make_qcow2
from tests.support.flows import unique_name

pytestmark = pytest.mark.stack
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_env(stack: Stack) -> dict[str, str]:
    return {**os.environ, "LQ_URL": stack.api_url, "LQ_API_TOKEN": stack.api_token or ""}


def run_example(name: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(EXAMPLES / name), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_line(stream: IO[str] | None, deadline: float) -> str:
    """The next line; the process is killed by the test's timeout if it never comes."""
    assert stream is not None
    line = stream.readline()
    assert time.monotonic() < deadline, "the example took too long"
    return line.rstrip("\n")


def finish(process: subprocess.Popen[str], timeout_s: float = 30) -> tuple[str, str]:
    try:
        out, err = process.communicate(timeout=timeout_s)
    finally:
        process.kill()
    assert process.returncode == 0, err
    return out, err


def test_create_and_wait_prints_the_running_vm(stack: Stack, tmp_path: Path) -> None:
    image = make_qcow2(tmp_path / "base.qcow2")
    name = unique_name()
    process = run_example("create_and_wait.py", name, str(image), env=example_env(stack))
    out, _ = finish(process, timeout_s=60)
    vm = Client(stack.api_url, token=stack.api_token or "").vms.get(name)
    assert out.splitlines() == [f"created {vm.id} (pending)",
                                f"{name} is {vm.state} on {vm.node}"]
    assert vm.state == "running"


def test_sse_subscriber_prints_a_vms_state_changes(stack: Stack, tmp_path: Path) -> None:
    image = make_qcow2(tmp_path / "base.qcow2")
    process = run_example("sse_subscriber.py", "3", env=example_env(stack))
    deadline = time.monotonic() + 30
    assert read_line(process.stdout, deadline) == "subscribed"
    client = Client(stack.api_url, token=stack.api_token or "")
    vm = client.vms.create(CreateVmRequest(name=unique_name(), image=str(image), memory_mib=256))
    out, _ = finish(process)
    lines = out.splitlines()
    assert len(lines) == 3
    state_lines = [line.split() for line in lines if " vm.state_changed " in line]
    assert state_lines and all(parts[2] == vm.id for parts in state_lines)
    ids = [int(line.split()[0]) for line in lines]
    assert ids == list(range(ids[0], ids[0] + 3))  # each event once, none skipped
    # Resuming after the first id replays exactly what followed it.
    again = run_example("sse_subscriber.py", "2", str(ids[0]), env=example_env(stack))
    replay, _ = finish(again)
    assert replay.splitlines() == ["subscribed", *lines[1:3]]


def test_nats_subscriber_decodes_vm_events_with_the_shared_schemas(
        stack: Stack, tmp_path: Path) -> None:
    image = make_qcow2(tmp_path / "base.qcow2")
    creds = str(stack.nats.creds_for("api"))
    env = {**example_env(stack), "LQ_NATS_URL": stack.nats_url, "LQ_NATS_CREDS": creds}
    process = run_example("nats_subscriber.py", "2", env=env)
    deadline = time.monotonic() + 30
    assert read_line(process.stdout, deadline) == "subscribed"
    client = Client(stack.api_url, token=stack.api_token or "")
    vm = client.vms.create(CreateVmRequest(name=unique_name(), image=str(image), memory_mib=256))
    out, _ = finish(process)
    first, second = out.splitlines()
    assert first.endswith(f"{vm.id} None -> pending") or f"{vm.id} " in first
    assert first.startswith(f"lq.evt.vm.{vm.id}.state_changed ")
    assert second.startswith(f"lq.evt.vm.{vm.id}.")
