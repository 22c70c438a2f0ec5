"""The real guest boots under libvirt/QEMU (TCG) and cloud-init configures it from our seed.

Proves issue 4's guest side before the rest of the stack: seed files from cloud_config, ISO from
seed_iso, readiness from the serial log, then SSH in with the generated key and check the host
key readiness collected. Then an ACPI shutdown and a second boot: same instance-id, so cloud-init
does not run its per-instance work again.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import libvirt
import pytest

from limiquantix.common.cloud_init import prepare
from limiquantix.common.vms import CloudInitRequest, VmRecord
from limiquantix.node_agent.readiness import wait_for_guest_ready
from limiquantix.node_agent.seed.nocloud import seed_files
from tests.support.guest_vm import (
    GuestDomain,
    Ssh,
    fingerprint_of,
    keygen,
    scan_host_keys,
    work_dir,
)

pytestmark = [pytest.mark.guest, pytest.mark.timeout(1500)]

READY_TIMEOUT_S = 600  # TCG on a busy 2-core machine: ~45-80 s usually
CUSTOM_USER_DATA = """#cloud-config
users:
  - name: ops
    shell: /bin/bash
    ssh_authorized_keys: ['{ops_key}']
runcmd:
  - echo ran >> /var/tmp/custom-runs
"""


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = work_dir()
    yield path  # GuestDomain.destroy removes it; this covers failures before the domain exists
    shutil.rmtree(path, ignore_errors=True)


def _record(name: str, admin_key: str, ops_key: str) -> VmRecord:
    request = CloudInitRequest(
        user="admin", ssh_authorized_keys=(admin_key,), hostname=name,
        user_data=CUSTOM_USER_DATA.format(ops_key=ops_key),
    )
    now = datetime.now(UTC)
    return VmRecord(id=f"vm-{name}", name=name, image="debian12", vcpus=1, memory_mib=1024,
                    disk_gib=4, cloud_init=prepare(request, vm_name=name),
                    created_at=now, updated_at=now)


async def test_guest_is_configured_by_cloud_init_and_reachable_over_ssh(
        guest_image: Path, qemu_system: libvirt.virConnect, workdir: Path) -> None:
    admin_key, ops_key = keygen(workdir, "admin"), keygen(workdir, "ops")
    name = f"guest-{workdir.name[-6:].lower().replace('_', '-')}"
    record = _record(name, admin_key.with_suffix(".pub").read_text().strip(),
                     ops_key.with_suffix(".pub").read_text().strip())
    vm = GuestDomain(qemu_system, guest_image, workdir, seed_files(record))
    try:
        # First boot: cloud-init runs.
        started = datetime.now(UTC)
        await vm.start()
        guest = await wait_for_guest_ready(vm.serial_log, started_at=started,
                                           timeout_s=READY_TIMEOUT_S, start_offset=0)
        assert guest.boot_seconds is not None and guest.ssh_host_keys
        assert "10.0.2.15" in guest.addresses  # QEMU user networking's guest address

        known, scanned = await scan_host_keys(vm.ssh_port)
        assert sorted(scanned) == sorted(fingerprint_of(k) for k in guest.ssh_host_keys)
        known_hosts = workdir / "known_hosts"
        known_hosts.write_text(known)
        ssh = Ssh(vm.ssh_port, admin_key, known_hosts)

        code, out, err = await ssh("id admin")
        assert code == 0, err
        assert "uid=" in out and "(sudo)" in out
        assert (await ssh("sudo -n true"))[0] == 0
        assert (await ssh("hostname"))[1].strip() == name
        code, out, _ = await ssh("cloud-init status")
        assert "status: done" in out
        # The custom user-data merged in: its own user (with its own key) and its runcmd.
        ops = Ssh(vm.ssh_port, ops_key, known_hosts, user="ops")
        assert (await ops("cat /var/tmp/custom-runs"))[1].split() == ["ran"]

        # ACPI shutdown, then a second boot with the same seed (same instance-id).
        await vm.shutdown()
        offset = vm.log_size()
        started = datetime.now(UTC)
        await vm.start()
        again = await wait_for_guest_ready(vm.serial_log, started_at=started,
                                           timeout_s=READY_TIMEOUT_S, start_offset=offset)
        second_boot = vm.serial_log.read_bytes()[offset:]
        assert b"finished at" in second_boot
        assert b"BEGIN SSH HOST KEY FINGERPRINTS" not in second_boot  # per-instance: not again
        assert again.ssh_host_keys == guest.ssh_host_keys  # carried over from the first boot
        _, rescanned = await scan_host_keys(vm.ssh_port)
        assert sorted(rescanned) == sorted(scanned)
        code, out, err = await ssh("cat /var/tmp/custom-runs; cloud-init status")
        assert code == 0, err
        assert out.split()[0:1] == ["ran"] and out.count("ran") == 1  # runcmd ran once only
        assert "status: done" in out

        # A reboot inside the same QEMU: the log still ends with this boot's "finished" and no
        # power-down; readiness, told only the time (as the node agent does), must wait for
        # the next one.
        finished_before = vm.serial_log.read_bytes().count(b"finished at")
        await asyncio.to_thread(vm.on_domain, lambda dom: dom.reboot(0))
        started = datetime.now(UTC)
        rebooted = await wait_for_guest_ready(vm.serial_log, started_at=started,
                                              timeout_s=READY_TIMEOUT_S)
        assert vm.serial_log.read_bytes().count(b"finished at") == finished_before + 1
        assert rebooted.boot_seconds is not None and rebooted.boot_seconds > 5
        assert rebooted.ssh_host_keys == guest.ssh_host_keys
    finally:
        await asyncio.to_thread(vm.destroy)
    assert not workdir.exists()
