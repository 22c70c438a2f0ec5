"""Issue 18's outside judge: cloud-init's ConfigDrive datasource in the real Debian guest reads
our config drive (label config-2): create with ``datasource: configdrive`` -> ready -> SSH with
the key, the host name from meta_data.json/user-data, the NIC configured from the
network_data.json we translated (DHCP on the VM's MAC), and cloud-init saying which datasource.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from limiquantix.local.stack import Stack
from limiquantix.node_agent.domain_xml import mac_for
from tests.support.flows import create_vm, unique_name
from tests.support.guest_vm import (
    GUEST_STACK_ENV,
    Ssh,
    fingerprint_of,
    import_image,
    keep_evidence,
    keygen,
    remove_vm,
    scan_host_keys,
    serve_file,
    wait_ready,
)

pytestmark = [pytest.mark.guest, pytest.mark.stack, pytest.mark.timeout(1800)]

NETWORK_CONFIG = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n"


async def test_config_drive_guest_is_reachable_with_its_key_and_named_right(
        guest_image: Path, qemu_tmp: Path) -> None:
    key = keygen(qemu_tmp, "admin")
    public = key.with_suffix(".pub").read_text().strip()
    name = unique_name("cfgdrive")
    async with serve_file(guest_image) as url, \
            Stack(qemu_tmp / "s", libvirt_uri="qemu:///system",
                  extra_env=GUEST_STACK_ENV) as stack, \
            aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as api:
        image_id = await import_image(api, url)
        vm = await create_vm(api, name=name, image=image_id, memory_mib=1024, disk_gib=4,
                             cloud_init={"user": "admin", "ssh_authorized_keys": [public],
                                         "datasource": "configdrive",
                                         "network_config": NETWORK_CONFIG},
                             network={"mode": "isolated"})
        try:
            record = await wait_ready(api, vm["id"])
            assert record["cloud_init"]["datasource"] == "configdrive"
            (forward,) = [f for f in record["forwards"] if f["guest_port"] == 22]
            known, scanned = await scan_host_keys(forward["host_port"])
            assert sorted(scanned) == sorted(
                fingerprint_of(k) for k in record["guest"]["ssh_host_keys"])
            known_hosts = qemu_tmp / "known_hosts"
            known_hosts.write_text(known)
            ssh = Ssh(forward["host_port"], key, known_hosts)
            code, out, err = await ssh("hostname")
            assert code == 0, err
            assert out.strip() == name
            # The datasource cloud-init used, and the instance-id it took from meta_data.json.
            code, out, err = await ssh("cat /run/cloud-init/instance-data.json")
            assert code == 0, err
            data = json.loads(out)
            instance_id = record.get("instance_id") or vm["id"]
            assert "config-disk" in data["v1"]["subplatform"], data["v1"]  # a disk, not a dir
            assert data["ds"]["meta_data"]["uuid"] == instance_id
            (link,) = data["ds"]["network_json"]["links"]
            assert link["ethernet_mac_address"] == mac_for(vm["id"])
            code, out, _ = await ssh("sudo cat /var/lib/cloud/data/instance-id")
            assert out.strip() == instance_id
            # The NIC came up from our network_data.json (source "ds", not cloud-init's
            # fallback), rendered for ifupdown on the interface with the VM's MAC.
            code, out, _ = await ssh("sudo grep 'Applying network configuration from' "
                                     "/var/log/cloud-init.log")
            assert "from ds" in out and "from fallback" not in out, out
            code, out, _ = await ssh("cat /etc/network/interfaces.d/50-cloud-init")
            assert "iface eth0 inet dhcp" in out, out
        except BaseException:
            keep_evidence(stack, name)
            raise
        finally:
            await remove_vm(api, vm["id"])
