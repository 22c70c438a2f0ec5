"""``lq vm create`` flags for seed formats and Windows: the body they make, the windows YAML file
overlaid by single flags, the password only ever prompted for (or in the file)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from limiquantix.cli import vm_input
from limiquantix.cli.errors import LocalFileError, UsageError
from limiquantix.cli.main import build_parser
from limiquantix.common.vms import CreateVmRequest


def _body(*argv: str) -> dict[str, object]:
    args = build_parser().parse_args(["vm", "create", "win-1", "--image", "win11", *argv])
    body = vm_input.create_body(args)
    msgspec.convert(body, CreateVmRequest)  # the API's own schema accepts it
    return body


def test_config_drive_and_network_config_flags_fill_cloud_init(tmp_path: Path) -> None:
    net = tmp_path / "net.yaml"
    net.write_text("version: 2\nethernets:\n  eth0:\n    dhcp4: true\n")
    body = _body("--datasource", "configdrive", "--network-config", str(net), "--user", "ops")
    assert body["cloud_init"] == {"user": "ops", "datasource": "configdrive",
                                  "network_config": net.read_text()}
    assert "windows" not in body and "os_type" not in body


def test_windows_file_is_overlaid_by_flags_and_implies_os_type(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "win.yaml"
    spec.write_text("computer_name: OLD\ntimezone: UTC\nfirst_logon_commands: [whoami]\n")
    answers = iter(["Pa55!", "Pa55!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    body = _body("--windows", str(spec), "--windows-computer-name", "WEB01",
                 "--windows-winrm", "--windows-no-rdp", "--windows-secure-boot",
                 "--windows-first-logon", "ipconfig", "--windows-password-prompt",
                 "--cpus", "2", "--memory", "4G", "--disk", "64G")
    assert body["os_type"] == "windows"
    assert body["windows"] == {
        "computer_name": "WEB01", "timezone": "UTC", "enable_winrm": True, "enable_rdp": False,
        "secure_boot": True, "first_logon_commands": ["whoami", "ipconfig"],
        "admin_password": "Pa55!"}


def test_os_type_alone_sends_no_windows_section() -> None:
    assert _body("--os-type", "windows") == {"name": "win-1", "image": "win11",
                                             "os_type": "windows"}


def test_a_windows_file_that_is_not_a_mapping_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "win.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(LocalFileError, match="must be a mapping"):
        _body("--windows", str(bad))


def test_domain_join_flags_prompt_for_the_join_password_and_overlay_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt="": prompts.append(prompt) or "j0in!")
    body = _body("--windows-join-domain", "corp.example.com", "--windows-join-user",
                 "CORP\\joiner", "--windows-join-ou", "OU=Servers,DC=corp,DC=example,DC=com")
    assert body["windows"] == {"domain_join": {
        "domain": "corp.example.com", "user": "CORP\\joiner", "password": "j0in!",
        "ou": "OU=Servers,DC=corp,DC=example,DC=com"}}
    assert prompts == ["Password of CORP\\joiner (joins corp.example.com): "]
    # A file that holds the password is not prompted for; a flag overrides its domain.
    spec = tmp_path / "win.yaml"
    spec.write_text("domain_join: {domain: old.example.com, user: joiner, password: fromfile}\n")
    body = _body("--windows", str(spec), "--windows-join-domain", "new.example.com")
    assert body["windows"] == {"domain_join": {
        "domain": "new.example.com", "user": "joiner", "password": "fromfile"}}
    assert len(prompts) == 1


def test_a_domain_join_without_an_account_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="needs the domain and an account"):
        _body("--windows-join-domain", "corp.example.com")
