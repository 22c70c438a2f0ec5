"""SSH target, OpenSSH-compatible fingerprints, and the create body built from flags."""

from __future__ import annotations

import argparse
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from limiquantix.cli import ssh, vm_input
from limiquantix.cli.errors import LocalFileError, UsageError
from limiquantix.common.vms import GuestInfo, PortForward, VmRecord

NOW = datetime.now(UTC)


def _record(**changes: object) -> VmRecord:
    base = VmRecord(id="0f1e", name="web", image="debian-12", vcpus=1, memory_mib=512,
                    disk_gib=1, created_at=NOW, updated_at=NOW)
    return msgspec.structs.replace(base, **changes)


@pytest.fixture(scope="module")
def host_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A real ed25519 key pair and the fingerprint ssh-keygen prints for it."""
    key = tmp_path_factory.mktemp("keys") / "host"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    shown = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True,
                           check=True).stdout
    return Path(f"{key}.pub").read_text().strip(), shown.split()[1]


def test_fingerprints_match_what_ssh_keygen_prints(host_key: tuple[str, str]) -> None:
    public, expected = host_key
    assert ssh.fingerprint(public.split()[1]) == expected


def test_only_scanned_keys_with_a_reported_fingerprint_are_trusted(
        host_key: tuple[str, str]) -> None:
    public, fp = host_key
    kind, blob = public.split()[:2]
    scan = f"# 127.0.0.1:2201 SSH-2.0-OpenSSH\n[127.0.0.1]:2201 {kind} {blob}\n" \
           "[127.0.0.1]:2201 ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==\n"
    assert ssh.matching_keys(scan, {fp}) == [(kind, blob)]
    assert ssh.matching_keys(scan, {"SHA256:somethingelse"}) == []


def test_fingerprints_are_read_from_cloud_init_lines() -> None:
    record = _record(guest=GuestInfo(ssh_host_keys=(
        "256 SHA256:AbC/12+x root@web (ED25519)", "3072 SHA256:zzz9 root@web (RSA)")))
    assert ssh.fingerprints_of(record) == {"SHA256:AbC/12+x", "SHA256:zzz9"}


def test_target_comes_from_the_api_ssh_command_or_the_port_22_forward() -> None:
    from_command = _record(ssh_command="ssh -p 2201 admin@127.0.0.1")
    assert ssh.target_of(from_command) == ssh.SshTarget("127.0.0.1", 2201, "admin")
    from_forward = _record(forwards=(PortForward(guest_port=80, host_port=8080),
                                     PortForward(guest_port=22, host_port=2202)))
    assert ssh.target_of(from_forward) == ssh.SshTarget("127.0.0.1", 2202, "admin")
    assert ssh.target_of(_record()) is None


def test_ssh_argv_pins_the_key_by_vm_alias_and_puts_the_command_last(tmp_path: Path) -> None:
    target = ssh.SshTarget("127.0.0.1", 2201, "admin")
    argv = ssh.ssh_argv(target, "lq-0f1e", tmp_path / "kh", verified=True, identity="id",
                        remote=("uptime",))
    assert argv[:5] == ["ssh", "-p", "2201", "-i", "id"]
    assert "StrictHostKeyChecking=yes" in argv and "HostKeyAlias=lq-0f1e" in argv
    assert argv[-2:] == ["admin@127.0.0.1", "uptime"]
    unverified = ssh.ssh_argv(target, "a", tmp_path / "kh", verified=False)
    assert "StrictHostKeyChecking=accept-new" in unverified


def _create_args(**given: object) -> argparse.Namespace:
    defaults: dict[str, object] = dict(
        name="web", image="debian-12", cpus=None, memory=None, disk=None, node=None, user=None,
        ssh_key=None, password_prompt=False, ssh_password_auth=False, user_data=None,
        hostname=None, network=None)
    defaults.update(given)
    return argparse.Namespace(**defaults)


def test_create_body_sends_only_what_was_given() -> None:
    assert vm_input.create_body(_create_args()) == {"name": "web", "image": "debian-12"}


def test_create_body_converts_sizes_and_reads_key_and_user_data_files(
        tmp_path: Path, host_key: tuple[str, str]) -> None:
    public, _ = host_key
    (tmp_path / "id.pub").write_text(public + "\n")
    (tmp_path / "user-data.yaml").write_text("#cloud-config\npackages: [htop]\n")
    body = vm_input.create_body(_create_args(
        cpus=2, memory="2G", disk="20G", user="ops", ssh_key=[str(tmp_path / "id.pub")],
        user_data=str(tmp_path / "user-data.yaml"), network="isolated", node="node-a"))
    assert body == {
        "name": "web", "image": "debian-12", "vcpus": 2, "memory_mib": 2048, "disk_gib": 20,
        "node": "node-a", "network": {"mode": "isolated"},
        "cloud_init": {"user": "ops", "ssh_authorized_keys": [public],
                       "user_data": "#cloud-config\npackages: [htop]\n"},
    }


def test_a_private_key_is_refused_naming_the_public_one(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nxxx\n-----END OPENSSH PRIVATE KEY-----\n")
    with pytest.raises(LocalFileError, match="private key") as raised:
        vm_input.ssh_keys(str(key))
    assert f"{key}.pub" in raised.value.hint


def test_a_missing_key_file_is_a_clear_error() -> None:
    with pytest.raises(LocalFileError, match="does not exist"):
        vm_input.ssh_keys("/nonexistent/id.pub")


def test_the_password_is_prompted_twice_and_must_match(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["s3cret", "s3cret"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    body = vm_input.create_body(_create_args(password_prompt=True))
    assert body["cloud_init"] == {"password": "s3cret"}
    answers = iter(["one", "two"])
    with pytest.raises(UsageError, match="do not match"):
        vm_input.create_body(_create_args(password_prompt=True))


@pytest.mark.parametrize(("value", "body"), [
    ("none", {"mode": "none"}), ("user", {"mode": "user"}),
    ("bridge:br0", {"mode": "bridge", "source": "br0"}),
    ("network:lab", {"mode": "network", "source": "lab"}),
])
def test_network_modes(value: str, body: dict[str, str]) -> None:
    assert vm_input.network(value) == body


@pytest.mark.parametrize("value", ["wifi", "bridge", "network:"])
def test_bad_network_modes_are_usage_errors(value: str) -> None:
    with pytest.raises(UsageError):
        vm_input.network(value)
