"""The guest agent's pure parts: what libvirt/the agent answer, turned into record fields;
phases that only move forward; the SSH banner probe; agent errors typed; no agent on the test
driver (freeze/thaw answer agent_unavailable)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import libvirt
import pytest

from limiquantix.common.guest_rpc import (
    AgentUnavailable,
    FileWriteCall,
    GuestAgentError,
    GuestExecCall,
    GuestFileNotFound,
)
from limiquantix.common.vms import GuestAddress, GuestInfo
from limiquantix.node_agent import guest_phases
from limiquantix.node_agent.guest_agent import (
    AgentReport,
    agent_error,
    apply_report,
    channel_connected,
    merge_addresses,
    parse_guest_info,
    parse_interfaces,
)
from limiquantix.node_agent.guest_ops import (
    exec_arguments,
    exec_result,
    freeze_filesystems,
    thaw_filesystems,
)
from limiquantix.node_agent.libvirt_events import register_event_loop
from limiquantix.node_agent.libvirt_host import LibvirtHost
from limiquantix.node_agent.readiness import ConsoleScan

T0 = datetime(2026, 1, 1, tzinfo=UTC)

GUEST_INFO = {
    "user.count": 2, "user.0.name": "admin", "user.0.login-time": 1, "user.1.name": "root",
    "os.id": "debian", "os.name": "Debian GNU/Linux", "os.pretty-name": "Debian GNU/Linux 12",
    "os.version": "12 (bookworm)", "os.kernel-release": "6.1.0-27-amd64",
    "hostname": "web-1", "fs.count": 2,
    "fs.0.mountpoint": "/", "fs.0.fstype": "ext4", "fs.0.total-bytes": 4_000_000_000,
    "fs.0.used-bytes": 1_000_000_000, "fs.1.mountpoint": "/boot/efi", "fs.1.fstype": "vfat",
}
INTERFACES = {
    "lo": {"hwaddr": "00:00:00:00:00:00", "addrs": [{"type": 0, "addr": "127.0.0.1",
                                                     "prefix": 8}]},
    "enp0s10": {"hwaddr": "52:54:00:aa:bb:cc", "addrs": [
        {"type": 0, "addr": "10.0.2.15", "prefix": 24},
        {"type": 1, "addr": "fe80::5054:ff:feaa:bbcc", "prefix": 64},
        {"type": 1, "addr": "2001:db8::15", "prefix": 64}]},
}


def test_guest_info_becomes_os_users_and_filesystems() -> None:
    os_info, users, filesystems = parse_guest_info(GUEST_INFO)
    assert (os_info.name, os_info.version, os_info.kernel, os_info.hostname) == (
        "Debian GNU/Linux 12", "12 (bookworm)", "6.1.0-27-amd64", "web-1")
    assert users == ("admin", "root")
    assert filesystems[0].mount == "/" and filesystems[0].used_bytes == 1_000_000_000
    assert filesystems[1].total_bytes is None  # not reported: unknown, not zero


def test_hostile_guest_info_is_bounded() -> None:
    huge = {"user.count": 10_000, **{f"user.{i}.name": "x" * 10_000 for i in range(100)},
            "os.name": "y" * 100_000}
    os_info, users, _ = parse_guest_info(huge)
    assert len(os_info.name) == 256 and users == ("x" * 256,)  # 32 read, all the same name


def test_interface_addresses_keep_global_ones_with_their_interface() -> None:
    found = parse_interfaces(INTERFACES)
    assert [(a.address, a.prefix, a.interface, a.source) for a in found] == [
        ("10.0.2.15", 24, "enp0s10", "agent"), ("2001:db8::15", 64, "enp0s10", "agent")]


def test_agent_and_serial_addresses_merge_each_with_its_source() -> None:
    serial = (GuestAddress(address="10.0.2.15", interface="ens10", source="serial"),)
    merged = merge_addresses(serial, "agent", parse_interfaces(INTERFACES))
    assert [(a.address, a.source) for a in merged] == [
        ("10.0.2.15", "serial"), ("10.0.2.15", "agent"), ("2001:db8::15", "agent")]
    # A new reading replaces that source's addresses only.
    again = merge_addresses(merged, "agent", (GuestAddress(address="10.0.2.16",
                                                            source="agent"),))
    assert [(a.address, a.source) for a in again] == [("10.0.2.15", "serial"),
                                                      ("10.0.2.16", "agent")]


def test_a_report_fills_the_guest_info_and_a_disconnect_keeps_the_last_reading() -> None:
    os_info, users, filesystems = parse_guest_info(GUEST_INFO)
    report = AgentReport(connected=True, version="7.2.0", commands=("guest-exec",), os=os_info,
                         users=users, filesystems=filesystems,
                         addresses=parse_interfaces(INTERFACES))
    guest = apply_report(GuestInfo(addresses=("10.0.2.15",), ip_addresses=(
        GuestAddress(address="10.0.2.15", source="serial"),)), report)
    assert guest.agent.connected and guest.agent.version == "7.2.0"
    assert guest.addresses == ("10.0.2.15", "2001:db8::15")
    assert guest.os is not None and guest.info_at is not None
    gone = apply_report(guest, AgentReport(connected=False))
    assert not gone.agent.connected and gone.agent.version == "7.2.0"
    assert gone.os == guest.os and gone.addresses == guest.addresses


def test_the_channel_state_comes_from_the_domain_xml() -> None:
    xml = ("<domain><devices><channel type='unix'><target type='virtio' "
           "name='org.qemu.guest_agent.0' state='{}'/></channel></devices></domain>")
    assert channel_connected(xml.format("connected"))
    assert not channel_connected(xml.format("disconnected"))
    assert not channel_connected("<domain><devices/></domain>")
    assert not channel_connected("not xml")


def _libvirt_error(code: int, message: str) -> libvirt.libvirtError:
    exc = libvirt.libvirtError(message)
    exc.err = (code, 0, message, 0, "", "", "", 0, 0)
    return exc


def test_agent_errors_are_typed() -> None:
    assert isinstance(agent_error(_libvirt_error(
        libvirt.VIR_ERR_AGENT_UNRESPONSIVE, "QEMU guest agent is not connected"), "guest-exec"),
        AgentUnavailable)
    assert isinstance(agent_error(_libvirt_error(
        libvirt.VIR_ERR_INTERNAL_ERROR, "failed to open file '/x': No such file or directory"),
        "guest-file-open"), GuestFileNotFound)
    other = agent_error(_libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, "Permission denied"),
                        "guest-file-open")
    assert isinstance(other, GuestAgentError) and other.status == 502


def test_exec_arguments_carry_no_shell_and_input_as_base64() -> None:
    call = GuestExecCall(vm_id="v", command=("cat", "-n"), input="hé")
    assert exec_arguments(call) == {"path": "cat", "arg": ["-n"], "capture-output": True,
                                    "input-data": base64.b64encode("hé".encode()).decode()}
    assert "input-data" not in exec_arguments(GuestExecCall(vm_id="v", command=("true",)))


def test_exec_output_is_decoded_and_bounded() -> None:
    status = {"exited": True, "exitcode": 3,
              "out-data": base64.b64encode(b"o" * 100).decode(),
              "err-data": base64.b64encode(b"e" * 100 + b"\xff").decode()}
    result = exec_result(status, limit=150).result()
    assert result.exit_code == 3 and result.truncated
    assert result.stdout == "o" * 100 and result.stderr == "e" * 50
    whole = exec_result(status).result()
    assert not whole.truncated and whole.stderr.endswith("\ufffd")
    killed = exec_result({"exited": True, "signal": 9})
    assert killed.exit_code is None and killed.signal == 9


def test_the_largest_exec_reply_fits_one_nats_message_whatever_the_bytes() -> None:
    """Control characters would cost six bytes each as JSON text; base64 costs 4/3."""
    import msgspec
    nuls = base64.b64encode(b"\0" * (1 << 20)).decode()
    reply = exec_result({"exited": True, "exitcode": 0, "out-data": nuls, "err-data": nuls})
    assert reply.truncated
    assert len(msgspec.json.encode(reply)) < 1024 * 1024 - 1024
    assert reply.result().stdout == "\0" * (256 * 1024) and reply.result().stderr == ""


def test_a_file_chunk_fits_one_nats_message() -> None:
    import msgspec

    from limiquantix.common.guest_rpc import FILE_CHUNK_BYTES
    call = FileWriteCall(vm_id="6f1c1e36-9b0e-4a57-9d7e-1d4f3c7a9b01", handle=1_000_000,
                         data_b64=base64.b64encode(b"\0" * FILE_CHUNK_BYTES).decode())
    assert len(msgspec.json.encode(call)) < 1024 * 1024 - 1024
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"vm_id": "v", "handle": 1, "data_b64": "A" * (FILE_CHUNK_BYTES * 2)},
                        FileWriteCall)


def test_phases_only_move_forward() -> None:
    guest = guest_phases.booted_guest(GuestInfo(), T0)
    assert guest.phase == "booting" and list(guest.phases) == ["defined", "booting"]
    network = guest_phases.with_phase(guest, "network", T0 + timedelta(seconds=10))
    assert network is not None and network.phase == "network"
    assert guest_phases.with_phase(network, "network", T0 + timedelta(seconds=11)) is None
    done = guest_phases.with_phase(network, "cloud_init_done", T0 + timedelta(seconds=40))
    assert done is not None
    assert guest_phases.with_phase(done, "cloud_init_failed", T0) is None  # one or the other
    assert guest_phases.with_phase(done, "network", T0) is None  # passed already
    ready = guest_phases.with_phase(done, "ready", T0 + timedelta(seconds=42))
    assert ready is not None and list(ready.phases) == [
        "defined", "booting", "network", "cloud_init_done", "ready"]
    assert guest_phases.elapsed_s(ready, T0 + timedelta(seconds=42)) == 42.0


def test_a_create_keeps_its_defined_time_and_a_restart_does_not() -> None:
    created = guest_phases.defined_guest(T0)
    booted = guest_phases.booted_guest(created, T0 + timedelta(seconds=1))
    assert booted.phases["defined"] == T0
    ready = guest_phases.with_phase(booted, "ready", T0 + timedelta(seconds=60))
    assert ready is not None
    restarted = guest_phases.booted_guest(ready, T0 + timedelta(seconds=600))
    assert restarted.phases["defined"] == T0 + timedelta(seconds=600)


def test_serial_addresses_keep_their_interface() -> None:
    scan = ConsoleScan()
    scan.feed(b"ci-info: ++++++++++++++++++++++Net device info+++++++++++++++++++++++\n"
              b"ci-info: | ens10  | True |  10.0.2.15  | 255.255.255.0 | global | 52:54:00 |\n"
              b"ci-info: |   lo   | True |  127.0.0.1  |   255.0.0.0   |  host  |    .    |\n"
              b"ci-info: ++++++++++++++++++++Route IPv4 info+++++++++++++++++++++\n")
    assert [(a.address, a.interface, a.source) for a in scan.address_details()] == [
        ("10.0.2.15", "ens10", "serial")]


@pytest.fixture
async def ssh_like() -> AsyncIterator[tuple[int, int]]:
    """Two local servers: one greets like sshd, one accepts and says nothing."""
    async def sshd(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n")
        await writer.drain()
        writer.close()

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    one = await asyncio.start_server(sshd, "127.0.0.1", 0)
    two = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with one, two:
        yield one.sockets[0].getsockname()[1], two.sockets[0].getsockname()[1]


async def test_only_an_ssh_banner_counts_as_ssh(ssh_like: tuple[int, int]) -> None:
    greets, silent = ssh_like
    assert await guest_phases.ssh_banner("127.0.0.1", greets)
    assert not await guest_phases.ssh_banner("127.0.0.1", silent, timeout_s=0.3)
    with __import__("socket").socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert not await guest_phases.ssh_banner("127.0.0.1", closed)
    assert not await guest_phases.wait_for_ssh("127.0.0.1", closed, timeout_s=0.5)


async def test_the_test_driver_has_no_agent_to_freeze_with() -> None:
    register_event_loop()
    async with LibvirtHost.open("test:///default") as host:
        uuid = (await host.list_domains())[0].uuid
        with pytest.raises(AgentUnavailable):
            await freeze_filesystems(host, uuid)
        with pytest.raises(AgentUnavailable):
            await thaw_filesystems(host, uuid)
