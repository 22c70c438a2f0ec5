"""Issue 14 on the real Debian 12 guest, through the HTTP API (its image has qemu-guest-agent):
the agent connects and describes the guest, its addresses include the guest's, exec / files /
password work inside, the phases arrive in order, a guest whose agent is gone answers 409
``agent_unavailable``, and a stop goes through the agent.

ONE VM for the whole module (a TCG boot costs a minute on 2 shared cores); the tests run in
file order on it and the last one stops it. Run under the machine-wide lock:
``flock /tmp/lq-guest.lock .venv/bin/python -m pytest tests/guest/test_guest_agent_real.py``
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from limiquantix.local.stack import Stack
from tests.support.cli import Lq, base_env
from tests.support.flows import action, get_vm, unique_name, wait_state
from tests.support.guest_vm import GuestStack, Ssh, wait_ready

pytestmark = [pytest.mark.guest, pytest.mark.stack, pytest.mark.timeout(1800),
              pytest.mark.asyncio(loop_scope="module")]

PASSWORD = "agent set this one"
# Checked inside by the guest's own libcrypt (guest-exec runs as root: /etc/shadow is readable).
CHECK_PASSWORD = (
    "import crypt,sys; h=[l.split(':')[1] for l in open('/etc/shadow') "
    "if l.startswith('admin:')][0]; sys.exit(0 if crypt.crypt(sys.argv[1], h) == h else 1)")
PHASE_ORDER = ["defined", "booting", "network", "cloud_init_done", "ssh", "ready"]


@dataclass
class Guest:
    stack: Stack
    api: aiohttp.ClientSession
    vm_id: str
    name: str
    ssh: Ssh
    ready: dict[str, Any]


async def wait_for(api: aiohttp.ClientSession, vm_id: str, check: Any, what: str,
                   timeout_s: float = 240) -> dict[str, Any]:
    """Poll the record until ``check(record)``."""
    deadline = time.monotonic() + timeout_s
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        _, record = await get_vm(api, vm_id)
        if check(record):
            return record
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what} not seen in {timeout_s} s: {record.get('guest')}")


@pytest.fixture(scope="module")
def guest_stack_env() -> dict[str, str]:
    return {"LQ_GUEST_AGENT_REFRESH_S": "5"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def guest(guest_stack: GuestStack) -> Guest:
    """The module's VM, ready, its agent connected and its OS described."""
    name = unique_name("agent")
    vm = await guest_stack.create_vm(name)
    await wait_ready(guest_stack.api, vm["id"])
    ready = await wait_for(guest_stack.api, vm["id"],
                           lambda r: r["guest"].get("phase") == "ready"
                           and r["guest"]["agent"]["connected"]
                           and r["guest"].get("os"), "phase ready + agent info")
    return Guest(guest_stack.stack, guest_stack.api, vm["id"], name,
                 await guest_stack.ssh_to(ready), ready)


async def _exec(g: Guest, *command: str, expect: int = 200, **extra: Any) -> dict[str, Any]:
    async with g.api.post(f"/v1/vms/{g.vm_id}/exec",
                          json={"command": list(command), **extra}) as response:
        body = await response.json(content_type=None)
        assert response.status == expect, body
        return dict(body)


async def test_the_agent_connects_and_describes_the_guest(guest: Guest) -> None:
    info = guest.ready["guest"]
    assert info["agent"]["connected"] and info["agent"]["version"]
    assert {"guest-exec", "guest-file-open", "guest-set-user-password"} <= set(
        info["agent"]["commands"])
    assert "Debian" in info["os"]["name"] and info["os"]["kernel"]
    assert info["os"]["hostname"] == guest.name
    root = [f for f in info["filesystems"] if f["mount"] == "/"]
    assert root and 0 < root[0]["used_bytes"] < root[0]["total_bytes"]


async def test_addresses_include_the_guests_from_agent_and_serial(guest: Guest) -> None:
    record = await wait_for(guest.api, guest.vm_id, lambda r: {
        a["source"] for a in r["guest"]["ip_addresses"]} == {"agent", "serial"},
        "addresses from both sources")
    inside = (await _exec(guest, "hostname", "-I"))["stdout"].split()
    agent = [a for a in record["guest"]["ip_addresses"] if a["source"] == "agent"]
    assert {a["address"] for a in agent} == set(inside) - {"127.0.0.1"}
    assert all(a["interface"] and a["interface"] != "lo" for a in agent)
    assert set(inside) <= set(record["guest"]["addresses"])


async def test_exec_returns_output_exit_code_and_takes_input(guest: Guest) -> None:
    hostname = await _exec(guest, "cat", "/etc/hostname")
    assert hostname["exit_code"] == 0 and hostname["stdout"].strip() == guest.name
    assert not hostname["truncated"]
    assert (await _exec(guest, "sh", "-c", "echo oops >&2; exit 3")) | {"duration_s": 0} == {
        "exit_code": 3, "signal": None, "stdout": "", "stderr": "oops\n", "truncated": False,
        "duration_s": 0}
    assert (await _exec(guest, "cat", input="fed on stdin"))["stdout"] == "fed on stdin"
    big = await _exec(guest, "head", "-c", str(1 << 20), "/dev/zero")
    assert big["truncated"] and len(big["stdout"]) == 256 * 1024
    timed_out = await _exec(guest, "sleep", "30", timeout_s=2, expect=504)
    assert timed_out["code"] == "guest_exec_timeout"


async def test_a_5_mib_file_goes_in_and_comes_back_identical(guest: Guest) -> None:
    data = os.urandom(5 << 20)
    digest = hashlib.sha256(data).hexdigest()
    async with guest.api.put(f"/v1/vms/{guest.vm_id}/files",
                             params={"path": "/var/tmp/random.bin", "mode": "0600"},
                             data=data) as response:
        written = await response.json()
        assert response.status == 201, written
    assert written == {"path": "/var/tmp/random.bin", "size": len(data), "sha256": digest}
    inside = await _exec(guest, "sha256sum", "/var/tmp/random.bin")
    assert inside["stdout"].split()[0] == digest
    assert (await _exec(guest, "stat", "-c", "%a", "/var/tmp/random.bin"))["stdout"].strip() == (
        "600")
    async with guest.api.get(f"/v1/vms/{guest.vm_id}/files",
                             params={"path": "/var/tmp/random.bin"}) as response:
        assert response.status == 200
        back = await response.read()
    assert hashlib.sha256(back).hexdigest() == digest
    async with guest.api.get(f"/v1/vms/{guest.vm_id}/files",
                             params={"path": "/nonexistent/file"}) as response:
        assert response.status == 404
        assert (await response.json())["code"] == "guest_file_not_found"


async def test_a_password_set_through_the_agent_checks_inside(guest: Guest) -> None:
    async with guest.api.post(f"/v1/vms/{guest.vm_id}/password",
                              json={"user": "admin", "password": PASSWORD}) as response:
        assert response.status == 200, await response.text()
    assert (await _exec(guest, "python3", "-W", "ignore", "-c", CHECK_PASSWORD,
                        PASSWORD))["exit_code"] == 0
    assert (await _exec(guest, "python3", "-W", "ignore", "-c", CHECK_PASSWORD,
                        "wrong"))["exit_code"] == 1


async def test_lq_exec_exits_with_the_guests_code_and_lq_cp_round_trips(
        guest: Guest, tmp_path: Path) -> None:
    lq = Lq({**base_env(tmp_path), "LQ_URL": guest.stack.api_url,
             "LQ_API_TOKEN": guest.stack.api_token})
    result = await lq("vm", "exec", guest.name, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (result.code, result.out, result.err) == (7, "out\n", "err\n")
    local = tmp_path / "notes.txt"
    local.write_bytes(b"line one\n\x00binary\xff\n")
    result = await lq("vm", "cp", str(local), f"{guest.name}:/var/tmp/notes.txt", "--mode", "0640")
    assert result.code == 0, result.err
    result = await lq("vm", "cp", f"{guest.name}:/var/tmp/notes.txt", str(tmp_path / "back.txt"))
    assert result.code == 0, result.err
    assert (tmp_path / "back.txt").read_bytes() == local.read_bytes()


async def test_the_phases_arrived_in_order_with_timestamps(guest: Guest) -> None:
    guest_info = guest.ready["guest"]
    assert guest_info["phase"] == "ready"
    assert list(guest_info["phases"]) == PHASE_ORDER
    times = [datetime.fromisoformat(guest_info["phases"][p]) for p in PHASE_ORDER]
    assert times == sorted(times)
    assert (times[-1] - times[1]).total_seconds() > 5  # a real boot, not one write


async def test_a_guest_whose_agent_stopped_answers_409_agent_unavailable(guest: Guest) -> None:
    # --no-block: systemd stops the agent at once; the exec's status may or may not still be
    # read from it (200, or the agent already gone).
    async with guest.api.post(f"/v1/vms/{guest.vm_id}/exec", json={
            "command": ["systemctl", "--no-block", "stop", "qemu-guest-agent"]}) as response:
        assert response.status in (200, 409, 502), await response.text()
    await wait_for(guest.api, guest.vm_id, lambda r: not r["guest"]["agent"]["connected"],
                   "agent disconnected", timeout_s=60)
    refused = await _exec(guest, "true", expect=409)
    assert refused["code"] == "agent_unavailable" and refused["hint"]
    code, _, err = await guest.ssh("sudo systemctl start qemu-guest-agent")
    assert code == 0, err
    await wait_for(guest.api, guest.vm_id, lambda r: r["guest"]["agent"]["connected"],
                   "agent connected again", timeout_s=60)


async def test_stop_goes_through_the_agent(guest: Guest) -> None:
    assert (await action(guest.api, guest.vm_id, "stop"))[0] == 202
    stopped = await wait_state(guest.api, guest.vm_id, "stopped", timeout_s=300)
    assert stopped["stopped_by"] == "agent"
