"""The seed files the node writes, read back the way cloud-init reads them."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
from typing import Any

import yaml

from limiquantix.common.vms import CloudInitRequest
from limiquantix.node_agent.seed.nocloud import GUEST_AGENT_INSTALL, MERGE_HOW, seed_files
from tests.support.cloud_init import make_record, merged_cloud_config, shell_scripts


def _cloud_config(data: bytes) -> dict[str, Any]:
    text = data.decode()
    assert text.startswith("#cloud-config\n")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def test_generated_user_data_configures_the_default_user(ssh_public_keys: list[str]) -> None:
    record = make_record(CloudInitRequest(user="admin", ssh_authorized_keys=tuple(ssh_public_keys),
                                          hostname="web-one"))
    config = _cloud_config(seed_files(record)["user-data"])
    assert config["hostname"] == "web-one" and config["manage_etc_hosts"] is True
    assert config["locale"] == "C.UTF-8"
    (user,) = config["users"]
    assert user["name"] == "admin" and user["shell"] == "/bin/bash"
    assert user["sudo"] == "ALL=(ALL) NOPASSWD:ALL" and "sudo" in user["groups"]
    assert user["ssh_authorized_keys"] == ssh_public_keys
    assert "passwd" not in user and "ssh_pwauth" not in config
    assert "dsa" not in config["ssh_genkeytypes"]


def test_password_goes_as_hash_and_unlocks_the_account() -> None:
    record = make_record(CloudInitRequest(password="hunter2 hunter2", ssh_pwauth=True))
    data = seed_files(record)["user-data"]
    assert b"hunter2" not in data
    config = _cloud_config(data)
    (user,) = config["users"]
    assert user["passwd"] == record.cloud_init.password_hash and user["passwd"].startswith("$6$")
    assert user["lock_passwd"] is False and config["ssh_pwauth"] is True


def test_meta_data_uses_vm_id_until_a_new_instance_id_is_issued() -> None:
    plain = yaml.safe_load(seed_files(make_record(CloudInitRequest()))["meta-data"])
    assert plain == {"instance-id": "vm-0123", "local-hostname": "web-1"}
    renewed = make_record(CloudInitRequest(hostname="db"), instance_id="vm-0123-2a")
    assert yaml.safe_load(seed_files(renewed)["meta-data"]) == {
        "instance-id": "vm-0123-2a", "local-hostname": "db"}


def test_network_config_and_vendor_data_are_written_only_when_given() -> None:
    assert set(seed_files(make_record(CloudInitRequest()))) == {"user-data", "meta-data"}
    net = "network:\n  version: 2\n  ethernets:\n    eth0: {dhcp4: true}\n"
    vendor = "#cloud-config\npackages: [curl]\n"
    files = seed_files(make_record(CloudInitRequest(network_config=net, vendor_data=vendor)))
    assert files["network-config"].decode() == net and files["vendor-data"].decode() == vendor


def test_custom_cloud_config_becomes_mime_with_the_generated_part_last(
        ssh_public_keys: list[str]) -> None:
    custom = "#cloud-config\nruncmd:\n  - touch /tmp/custom\n"
    record = make_record(CloudInitRequest(ssh_authorized_keys=(ssh_public_keys[0],),
                                          user_data=custom))
    message = email.message_from_bytes(seed_files(record)["user-data"],
                                       policy=email.policy.compat32)
    assert message.get_content_type() == "multipart/mixed"
    parts = [p for p in message.walk() if not p.is_multipart()]
    assert [p.get_content_type() for p in parts] == ["text/cloud-config", "text/cloud-config"]
    assert parts[0].get_payload(decode=True).decode() == custom
    generated = _cloud_config(parts[1].get_payload(decode=True))
    assert generated["merge_how"] == MERGE_HOW
    assert generated["users"][0]["ssh_authorized_keys"] == [ssh_public_keys[0]]


def test_cloud_init_merge_keeps_both_sides_lists_and_the_users_scalars(
        cloudinit: Any, ssh_public_keys: list[str], tmp_path: Path) -> None:
    """Run cloud-init 22.4's own processor and merger over the seed's user-data."""
    custom = (
        "#cloud-config\n"
        "hostname: custom-name\n"
        "users:\n  - name: ops\n    ssh_authorized_keys: ['" + ssh_public_keys[1] + "']\n"
        "ssh_authorized_keys: ['" + ssh_public_keys[1] + "']\n"
        "runcmd:\n  - touch /tmp/custom\n"
        "packages: [htop]\n"
    )
    record = make_record(CloudInitRequest(user="admin", ssh_authorized_keys=(ssh_public_keys[0],),
                                          user_data=custom))
    merged = merged_cloud_config(cloudinit, seed_files(record)["user-data"], tmp_path)
    assert [u["name"] for u in merged["users"]] == ["ops", "admin"]
    assert merged["users"][1]["ssh_authorized_keys"] == [ssh_public_keys[0]]
    assert merged["users"][0]["ssh_authorized_keys"] == [ssh_public_keys[1]]
    assert merged["ssh_authorized_keys"] == [ssh_public_keys[1]]
    # the user's runcmd first, then the generated guest-agent install (issue 14)
    assert merged["runcmd"] == ["touch /tmp/custom", ["sh", "-c", GUEST_AGENT_INSTALL]]
    assert merged["packages"] == ["htop"]
    assert merged["hostname"] == "custom-name"  # the user's scalar wins
    assert merged["manage_etc_hosts"] is True and merged["locale"] == "C.UTF-8"


def test_without_custom_data_cloud_init_sees_exactly_the_generated_config(
        cloudinit: Any, tmp_path: Path) -> None:
    record = make_record(CloudInitRequest(user="admin"))
    data = seed_files(record)["user-data"]
    assert merged_cloud_config(cloudinit, data, tmp_path) == yaml.safe_load(data)


def test_custom_script_is_kept_as_a_shell_script_part(cloudinit: Any, tmp_path: Path) -> None:
    script = "#!/bin/sh\necho hello > /tmp/hello\n"
    data = seed_files(make_record(CloudInitRequest(user_data=script)))["user-data"]
    assert shell_scripts(cloudinit, data, tmp_path) == [script]
    assert merged_cloud_config(cloudinit, data, tmp_path)["users"][0]["name"] == "admin"


def test_custom_mime_multipart_is_flattened_in_order(cloudinit: Any, tmp_path: Path) -> None:
    custom = (
        'Content-Type: multipart/mixed; boundary="XX"\nMIME-Version: 1.0\n\n'
        "--XX\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho one\n"
        "--XX\nContent-Type: text/cloud-config\n\nruncmd: [two]\n"
        "--XX\nContent-Type: text/cloud-config\n"
        "Merge-Type: list(append)+dict(recurse_list)+str()\n\n"
        "runcmd: [three]\n--XX--\n"
    )
    # without the generated guest-agent runcmd: only the user's parts' order is in question
    data = seed_files(make_record(CloudInitRequest(user_data=custom, guest_agent=False)))[
        "user-data"]
    merged = merged_cloud_config(cloudinit, data, tmp_path)
    assert merged["runcmd"] == ["two", "three"]
    assert merged["users"][0]["name"] == "admin"
    # RFC 2046: the line break before a boundary belongs to the boundary.
    assert shell_scripts(cloudinit, data, tmp_path) == ["#!/bin/sh\necho one"]


def test_generated_config_installs_the_guest_agent_unless_opted_out() -> None:
    with_agent = yaml.safe_load(seed_files(make_record(CloudInitRequest()))["user-data"])
    assert with_agent["runcmd"] == [["sh", "-c", GUEST_AGENT_INSTALL]]
    assert "packages" not in with_agent  # the packages module fails hard without a mirror
    without = yaml.safe_load(seed_files(make_record(CloudInitRequest(guest_agent=False)))
                             ["user-data"])
    assert "runcmd" not in without


def test_guest_agent_install_never_fails_where_no_package_manager_works(tmp_path: Path) -> None:
    """A guest without the agent and without a mirror: the command still exits 0, in time."""
    import subprocess
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("apt-get", "systemctl"):  # present but failing, as offline
        (bin_dir / tool).write_text("#!/bin/sh\nexit 100\n")
        (bin_dir / tool).chmod(0o755)
    done = subprocess.run(["/bin/sh", "-c", GUEST_AGENT_INSTALL], capture_output=True,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=30)
    assert done.returncode == 0, done.stderr
