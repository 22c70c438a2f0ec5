"""``lq vm exec|cp|passwd`` and ``lq vm create --wait ssh`` against the real stack (node on
libvirt's test driver: no guest agent, no SSH), plus how ``cp`` tells a VM path from a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from limiquantix.cli.commands_vm_guest import remote_of
from limiquantix.local.stack import Stack
from tests.cli.test_cli_on_stack import api_get, one_error_line
from tests.support.cli import Lq
from tests.support.flows import unique_name


def test_cp_tells_a_vm_path_from_a_local_file() -> None:
    assert remote_of("web-1:/etc/hosts") == ("web-1", "/etc/hosts")
    assert remote_of("win-1:C:\\Windows\\x.txt") == ("win-1", "C:\\Windows\\x.txt")
    assert remote_of("./web-1:/x") is None  # a local path
    assert remote_of("notes.txt") is None
    assert remote_of("web-1:relative") is None


@pytest.mark.stack
async def test_guest_commands_without_an_agent_say_so_and_exit_1(
        lq: Lq, stack: Stack, tmp_path: Path) -> None:
    name = unique_name("cli-agent")
    created = await lq("vm", "create", name, "--memory", "128M", "--disk", "1G",
                       "--wait", "running")
    assert created.code == 0, created.err
    result = await lq("vm", "exec", name, "--", "cat", "/etc/hostname")
    assert result.code == 1 and result.out == ""
    assert "(agent_unavailable)" in one_error_line(result.err)
    assert "qemu-guest-agent" in result.err
    local = tmp_path / "app.conf"
    local.write_text("x=1\n")
    result = await lq("vm", "cp", str(local), f"{name}:/etc/app.conf")
    assert result.code == 1 and "(agent_unavailable)" in one_error_line(result.err)
    result = await lq("vm", "cp", f"{name}:/etc/hostname", str(tmp_path / "back"))
    assert result.code == 1 and not (tmp_path / "back").exists()
    result = await lq("vm", "passwd", name, "admin", "--password-stdin")
    assert result.code == 2  # stdin is empty: an empty password is not sent
    result = await lq("vm", "cp", str(local), str(tmp_path / "other"))
    assert result.code == 2 and "NAME:/absolute/path" in result.err
    result = await lq("vm", "exec", name)
    assert result.code == 2
    status, record = api_get(stack, f"/v1/vms/{name}")
    assert status == 200 and record["guest"]["agent"]["connected"] is False


@pytest.mark.stack
async def test_create_wait_ssh_names_the_phase_it_did_not_reach(lq: Lq) -> None:
    """The test driver boots no guest: the VM runs but never gets past ``booting``."""
    name = unique_name("cli-ssh")
    result = await lq("vm", "create", name, "--memory", "128M", "--disk", "1G", "--network",
                      "isolated", "--wait", "ssh", "--timeout", "4s")
    assert result.code == 3, result.err
    line = one_error_line(result.err)
    assert f"{name} did not reach phase ssh within 4.0s; phase booting after 0.0s" in line


def test_create_can_opt_out_of_the_guest_agent_install() -> None:
    import msgspec

    from limiquantix.cli import vm_input
    from limiquantix.cli.main import build_parser
    from limiquantix.common.vms import CreateVmRequest
    base = ["vm", "create", "web-1", "--image", "debian-12"]
    plain = msgspec.convert(vm_input.create_body(build_parser().parse_args(base)),
                            CreateVmRequest)
    assert plain.cloud_init.guest_agent is True
    opted = msgspec.convert(vm_input.create_body(build_parser().parse_args(
        [*base, "--no-guest-agent"])), CreateVmRequest)
    assert opted.cloud_init.guest_agent is False
