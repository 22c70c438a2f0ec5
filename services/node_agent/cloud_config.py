"""The NoCloud seed files of a VM: user-data, meta-data and optional network-config/vendor-data.

Pure functions of the VM record. (Issue 4 extends this: merge rules, locale, validation.)
"""

from __future__ import annotations

import yaml

from limiquantix.common.vms import VmRecord


def user_data(record: VmRecord) -> bytes:
    """The generated ``#cloud-config`` for the VM's default user."""
    ci = record.cloud_init
    user: dict[str, object] = {
        "name": ci.user,
        "groups": ["sudo"],
        "sudo": "ALL=(ALL) NOPASSWD:ALL",
        "shell": "/bin/bash",
        "ssh_authorized_keys": list(ci.ssh_authorized_keys),
    }
    if ci.password_hash:
        user["passwd"] = ci.password_hash
        user["lock_passwd"] = False
    config: dict[str, object] = {
        "hostname": ci.hostname or record.name,
        "manage_etc_hosts": True,
        "locale": ci.locale,
        "users": [user],
        "ssh_pwauth": ci.ssh_pwauth,
    }
    return b"#cloud-config\n" + yaml.safe_dump(config, sort_keys=False).encode()


def meta_data(record: VmRecord) -> bytes:
    """``instance-id`` decides first boot: stable unless the user asks for a new one."""
    data = {
        "instance-id": record.instance_id or record.id,
        "local-hostname": record.cloud_init.hostname or record.name,
    }
    return yaml.safe_dump(data, sort_keys=False).encode()


def seed_files(record: VmRecord) -> dict[str, bytes]:
    """File name → content of the seed ISO (label ``cidata``)."""
    files = {"user-data": user_data(record), "meta-data": meta_data(record)}
    if record.cloud_init.network_config:
        files["network-config"] = record.cloud_init.network_config.encode()
    if record.cloud_init.vendor_data:
        files["vendor-data"] = record.cloud_init.vendor_data.encode()
    return files
