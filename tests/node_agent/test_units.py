"""Small pure parts of the node agent: failpoints, KVM probe, state mapping, forwards, log tails."""

from __future__ import annotations

import time
from pathlib import Path

import libvirt
import pytest

from limiquantix.common.model import utcnow
from limiquantix.common.node_rpc import ConsoleLogReply, console_log_reply_decoder
from limiquantix.common.settings import load
from limiquantix.common.vms import NetworkSpec, PortForward, VmRecord, VmState
from limiquantix.node_agent.errors import FailpointTriggered
from limiquantix.node_agent.failpoints import Failpoints
from limiquantix.node_agent.forwards import bind_forwards, ssh_command, wanted_forwards
from limiquantix.node_agent.libvirt_host import DomainInfo, domain_uuid
from limiquantix.node_agent.queries import fit_reply, read_tail
from limiquantix.node_agent.reconcile_state import observed_state
from limiquantix.node_agent.virt_probe import kvm_usable, virt_type
from limiquantix.node_agent.vm_files import PathOutsideRoot, VmFiles, path_inside


async def test_failpoint_sleep_error_and_absent() -> None:
    points = Failpoints("before_ack=sleep:0.2, before_start=error")
    started = time.monotonic()
    await points.hit("before_ack")
    assert time.monotonic() - started >= 0.2
    with pytest.raises(FailpointTriggered):
        await points.hit("before_start")
    await points.hit("before_define")  # not configured: nothing happens
    assert not Failpoints("")


def test_failpoint_without_action_is_rejected() -> None:
    with pytest.raises(ValueError):
        Failpoints("before_ack")


def test_kvm_is_refused_when_the_module_is_kvm_pvm(tmp_path: Path) -> None:
    device = tmp_path / "kvm"
    device.write_bytes(b"")
    pvm = tmp_path / "kvm_pvm"
    assert kvm_usable(device, tmp_path / "absent")
    pvm.mkdir()
    assert not kvm_usable(device, pvm)
    assert not kvm_usable(tmp_path / "no-device", tmp_path / "absent")


def test_virt_type_setting_and_test_driver() -> None:
    assert virt_type(load({}, libvirt_uri="test:///default", virt_type="kvm")) == "test"
    assert virt_type(load({}, virt_type="qemu")) == "qemu"
    assert virt_type(load({}, virt_type="kvm")) == "kvm"
    assert virt_type(load({})) in {"kvm", "qemu"}


def _record(state: VmState) -> VmRecord:
    now = utcnow()
    return VmRecord(id="x", name="x", image="/i", vcpus=1, memory_mib=64, disk_gib=1,
                    state=state, created_at=now, updated_at=now)


@pytest.mark.parametrize(("dom_state", "reason", "record_state", "expected"), [
    (libvirt.VIR_DOMAIN_RUNNING, 1, VmState.READY, VmState.READY),
    (libvirt.VIR_DOMAIN_RUNNING, 1, VmState.STOPPED, VmState.RUNNING),
    (libvirt.VIR_DOMAIN_PAUSED, 1, VmState.RUNNING, VmState.PAUSED),
    (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN, VmState.READY,
     VmState.STOPPED),
    (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED, VmState.RUNNING,
     VmState.STOPPED),
    (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_CRASHED, VmState.RUNNING,
     VmState.ERROR),
    (libvirt.VIR_DOMAIN_CRASHED, 0, VmState.RUNNING, VmState.ERROR),
    (libvirt.VIR_DOMAIN_SHUTDOWN, 0, VmState.RUNNING, None),
])
def test_observed_state(dom_state: int, reason: int, record_state: VmState,
                        expected: VmState | None) -> None:
    info = DomainInfo("u", "lq-x", dom_state, reason)
    assert observed_state(info, _record(record_state)) == expected


def test_domain_uuid_is_the_vm_id_or_derived_from_it() -> None:
    vm_id = "6f1c1e36-9b0e-4a57-9d7e-1d4f3c7a9b01"
    assert domain_uuid(vm_id) == vm_id
    assert domain_uuid("vm-abc") == domain_uuid("vm-abc") != domain_uuid("vm-abd")


def test_forwards_add_ssh_and_pick_free_loopback_ports_in_the_range() -> None:
    network = NetworkSpec(mode="isolated", forwards=(PortForward(guest_port=80, host_port=0),))
    assert [f.guest_port for f in wanted_forwards(network)] == [22, 80]
    bound = bind_forwards(network, "127.0.0.1", load({}))
    assert all(20000 <= f.host_port <= 29999 for f in bound)
    assert bound[0].host_port != bound[1].host_port
    command = ssh_command(bound, "admin", "127.0.0.1")
    assert command == f"ssh -p {bound[0].host_port} admin@127.0.0.1"
    assert wanted_forwards(NetworkSpec(mode="none")) == ()
    assert wanted_forwards(NetworkSpec(mode="user", ssh=False)) == ()


def test_console_log_tail_and_size(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(b"boot\n" * 100 + "é".encode())
    reply = read_tail(log, 11)
    assert reply.truncated and reply.size == 502
    assert reply.data.endswith("é")
    whole = read_tail(log, 10_000)
    assert not whole.truncated and whole.data.startswith("boot\n")
    assert read_tail(tmp_path / "none.log", 10) == ConsoleLogReply(data="", size=0)


def test_console_log_reply_fits_one_nats_message() -> None:
    noisy = ConsoleLogReply(data="\x1b[0m" * 200_000, size=800_000)
    payload = fit_reply(noisy, 64 * 1024)
    assert len(payload) <= 64 * 1024
    decoded = console_log_reply_decoder.decode(payload)
    assert decoded.truncated and decoded.data and decoded.size == 800_000


@pytest.mark.parametrize("name", ["..", ".", "", "../x", "a/b", "/etc", "x\\y", "a\0b"])
def test_path_inside_refuses_names_that_are_not_plain(tmp_path: Path, name: str) -> None:
    with pytest.raises(PathOutsideRoot):
        path_inside(tmp_path, name)


def test_path_inside_refuses_a_symlink_out_of_its_root(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(PathOutsideRoot):
        path_inside(root, "escape")
    assert path_inside(root, "6f1c1e36-9b0e-4a57-9d7e-1d4f3c7a9b01") == (
        root / "6f1c1e36-9b0e-4a57-9d7e-1d4f3c7a9b01")
    with pytest.raises(PathOutsideRoot):
        VmFiles.of(tmp_path, "../../canary")
