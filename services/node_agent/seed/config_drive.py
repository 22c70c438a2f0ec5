"""The OpenStack config drive of a VM (volume label ``config-2``), and the choice of seed media.

What cloud-init's ConfigDrive datasource (and cloudbase-init on Windows) reads:
``openstack/latest/meta_data.json`` (``uuid`` is the instance-id: required; ``hostname``;
``public_keys``), ``openstack/latest/user_data`` (the same user-data a NoCloud seed carries,
merge rules included), ``openstack/latest/vendor_data.json`` (``{"cloud-init": <vendor-data>}``,
``{}`` without any) and ``openstack/latest/network_data.json`` translated from the VM's v2
network-config (libs/common/network_data.py). Without a network-config there is no
``network_data.json``: cloud-init then uses its fallback (DHCP on the first NIC), as with NoCloud.

No ``admin_pass``: the platform never holds the plain password, only its SHA-512 crypt hash,
which reaches the guest inside user-data (``users[].passwd``) as with NoCloud.
"""

from __future__ import annotations

import json
from typing import Any

from limiquantix.common.network_data import network_data
from limiquantix.common.vms import VmRecord
from limiquantix.node_agent.domain_xml import mac_for
from limiquantix.node_agent.seed import nocloud

LABEL = "config-2"
PREFIX = "openstack/latest/"


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def meta_data(record: VmRecord) -> dict[str, Any]:
    """``meta_data.json``: identity, host name and the SSH keys (keyed ``key-N``)."""
    ci = record.cloud_init
    return {
        "uuid": record.instance_id or record.id,
        "name": record.name,
        "hostname": ci.hostname or record.name,
        "launch_index": 0,
        "public_keys": {f"key-{i}": key for i, key in enumerate(ci.ssh_authorized_keys)},
    }


def config_drive_files(record: VmRecord) -> dict[str, bytes]:
    """Relative path -> content of the config drive of ``record``."""
    ci = record.cloud_init
    vendor = {"cloud-init": ci.vendor_data} if ci.vendor_data.strip() else {}
    files = {
        PREFIX + "meta_data.json": _json(meta_data(record)),
        PREFIX + "user_data": nocloud.user_data(record),
        PREFIX + "vendor_data.json": _json(vendor),
    }
    network = network_data(ci.network_config, mac_for(record.id))
    if network is not None:
        files[PREFIX + "network_data.json"] = _json(network)
    return files


def seed_media(record: VmRecord) -> tuple[dict[str, bytes], str]:
    """The files and volume label of the VM's seed ISO, by its ``cloud_init.datasource``."""
    if record.cloud_init.datasource == "configdrive":
        return config_drive_files(record), LABEL
    return nocloud.seed_files(record), "cidata"
