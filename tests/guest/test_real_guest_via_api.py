"""Issue 4 end to end through the HTTP API: a real Debian guest configured by cloud-init.

image imported into the library (from a local HTTP server) -> POST /v1/vms (user admin, a new
ed25519 key, network isolated) -> state ``ready`` -> ssh in with that key, host key equal to the
API's ``guest.ssh_host_keys`` -> stop (ACPI) -> start (cloud-init does not run again) -> delete.
Everything on 127.0.0.1; the guest's NIC is QEMU user networking with restrict=on.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from limiquantix.local.stack import Stack
from tests.support.flows import action, create_vm, unique_name, wait_state
from tests.support.guest_vm import (
    GUEST_STACK_ENV,
    Ssh,
    console_log,
    fingerprint_of,
    import_image,
    keep_evidence,
    keygen,
    remove_vm,
    scan_host_keys,
    serve_file,
    wait_ready,
)

pytestmark = [pytest.mark.guest, pytest.mark.stack, pytest.mark.timeout(2400)]

USER_DATA = "#cloud-config\nruncmd:\n  - echo ran >> /var/tmp/custom-runs\n"
PASSWORD = "correct horse battery staple"
# The guest's own libcrypt checks the $6$ hash our pure-Python SHA-512 crypt made.
CHECK_PASSWORD = (
    "sudo python3 -W ignore -c \"import crypt,sys; h=[l.split(':')[1] for l in "
    "open('/etc/shadow') if l.startswith('admin:')][0]; "
    "sys.exit(0 if h.startswith('\\$6\\$') and crypt.crypt(sys.argv[1], h) == h else 1)\" "
)


async def test_real_guest_created_through_the_api_is_reachable_with_its_key(
        guest_image: Path, qemu_tmp: Path) -> None:
    key = keygen(qemu_tmp, "admin")
    public = key.with_suffix(".pub").read_text().strip()
    name = unique_name("guest")
    async with serve_file(guest_image) as url, \
            Stack(qemu_tmp / "s", libvirt_uri="qemu:///system",
                  extra_env=GUEST_STACK_ENV) as stack, \
            aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as api:
        image_id = await import_image(api, url)
        vm = await create_vm(api, name=name, image=image_id, memory_mib=1024, disk_gib=4,
                             cloud_init={"user": "admin", "ssh_authorized_keys": [public],
                                         "user_data": USER_DATA, "password": PASSWORD},
                             network={"mode": "isolated"})
        try:
            await _lifecycle(api, vm["id"], name, key, public, qemu_tmp)
        except BaseException:
            keep_evidence(stack, name)
            raise
        finally:
            # Also on failure: the domain must not outlive the test.
            await remove_vm(api, vm["id"])


async def _lifecycle(api: aiohttp.ClientSession, vm_id: str, name: str, key: Path, public: str,
                     tmp: Path) -> None:
    record = await wait_ready(api, vm_id)
    guest = record["guest"]
    assert guest["boot_seconds"] > 0 and guest["ssh_host_keys"]
    (forward,) = [f for f in record["forwards"] if f["guest_port"] == 22]
    port = forward["host_port"]
    assert record["ssh_command"] == f"ssh -p {port} admin@127.0.0.1"
    known, scanned = await scan_host_keys(port)
    assert sorted(scanned) == sorted(fingerprint_of(k) for k in guest["ssh_host_keys"])
    known_hosts = tmp / "known_hosts"
    known_hosts.write_text(known)
    ssh = Ssh(port, key, known_hosts)
    code, out, err = await ssh("id admin")
    assert code == 0, err
    assert "(sudo)" in out
    assert (await ssh("sudo -n true"))[0] == 0
    assert (await ssh("hostname"))[1].strip() == name
    assert (await ssh("cat /var/tmp/custom-runs"))[1].split() == ["ran"]
    # The password reached the guest as a hash the guest accepts; the API never shows it.
    assert record["cloud_init"]["password_hash"] == "<set>"
    assert (await ssh(CHECK_PASSWORD + "'" + PASSWORD + "'"))[0] == 0
    assert (await ssh(CHECK_PASSWORD + "'wrong password'"))[0] == 1

    # Stop is an ACPI shutdown the guest carries out (it logs its power-down).
    assert (await action(api, vm_id, "stop"))[0] == 202
    await wait_state(api, vm_id, "stopped", timeout_s=360)
    first_log = await console_log(api, vm_id)
    assert "reboot: Power down" in first_log

    assert (await action(api, vm_id, "start"))[0] == 202
    again = await wait_ready(api, vm_id)
    assert sorted(again["guest"]["ssh_host_keys"]) == sorted(guest["ssh_host_keys"])
    second_boot = (await console_log(api, vm_id))[len(first_log):]
    assert "finished at" in second_boot
    assert "BEGIN SSH HOST KEY FINGERPRINTS" not in second_boot  # same instance-id
    code, out, err = await ssh("cat /var/tmp/custom-runs")
    assert code == 0, err
    assert out.split() == ["ran"]  # the per-instance runcmd did not run again

    # New cloud-init settings are a new instance: at the next boot cloud-init runs again, with
    # new host keys, which readiness reports (not the old ones). Stop + start, not reboot: a
    # live re-insert of the seed at the same path does not make QEMU reopen the file (see the
    # report of issue 4); a start opens it afresh.
    new_config = {"user": "admin", "ssh_authorized_keys": [public],
                  "user_data": USER_DATA.replace("echo ran", "echo ran-again")}
    async with api.post(f"/v1/vms/{vm_id}/cloud-init", json=new_config) as response:
        assert response.status == 202, await response.text()
        assert (await response.json())["instance_id"] != again["instance_id"]
    assert (await action(api, vm_id, "stop"))[0] == 202
    await wait_state(api, vm_id, "stopped", timeout_s=360)
    assert (await action(api, vm_id, "start"))[0] == 202
    renewed = await wait_ready(api, vm_id)
    assert renewed["guest"]["ssh_host_keys"]
    assert set(renewed["guest"]["ssh_host_keys"]).isdisjoint(guest["ssh_host_keys"])
    known, scanned = await scan_host_keys(port)
    assert sorted(scanned) == sorted(fingerprint_of(k) for k in renewed["guest"]["ssh_host_keys"])
    known_hosts.write_text(known)
    code, out, err = await ssh("cat /var/tmp/custom-runs")
    assert code == 0, err
    assert out.split() == ["ran", "ran-again"]
