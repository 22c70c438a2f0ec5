"""Issue 18's outside judge: cloud-init's ConfigDrive datasource in the real Debian guest reads
our config drive (label config-2): create with ``datasource: configdrive`` -> ready -> SSH with
the key, the host name from meta_data.json/user-data, the NIC configured from the
network_data.json we translated (DHCP on the VM's MAC), and cloud-init saying which datasource.
"""

from __future__ import annotations

import json

import pytest

from limiquantix.node_agent.domain_xml import mac_for
from tests.support.flows import unique_name
from tests.support.guest_vm import GuestStack, wait_ready

pytestmark = [pytest.mark.guest, pytest.mark.stack, pytest.mark.timeout(1800),
              pytest.mark.asyncio(loop_scope="module")]

NETWORK_CONFIG = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n"


async def test_config_drive_guest_is_reachable_with_its_key_and_named_right(
        guest_stack: GuestStack) -> None:
    name = unique_name("cfgdrive")
    vm = await guest_stack.create_vm(name, cloud_init=guest_stack.cloud_init(
        datasource="configdrive", network_config=NETWORK_CONFIG))
    record = await wait_ready(guest_stack.api, vm["id"])
    assert record["cloud_init"]["datasource"] == "configdrive"
    ssh = await guest_stack.ssh_to(record)
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
