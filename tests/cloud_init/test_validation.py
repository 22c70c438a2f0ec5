"""Cloud-init requests are refused with a 422 that says what and where, or stored hashed."""

from __future__ import annotations

import base64
import struct
import subprocess
from pathlib import Path

import msgspec
import pytest

from limiquantix.common.cloud_init import prepare, validate_network_config, validate_user_data
from limiquantix.common.cloud_init_errors import (
    InvalidNetworkConfig,
    InvalidPassword,
    InvalidSshKey,
    InvalidUserData,
    InvalidVendorData,
)
from limiquantix.common.errors import InvalidRequest
from limiquantix.common.sha512_crypt import verify
from limiquantix.common.vms import CloudInitRequest


def _keygen(tmp_path: Path, kind: str) -> str:
    path = tmp_path / f"id_{kind}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"me@{kind}", "-f",
                    str(path)], check=True)
    return path.with_suffix(".pub").read_text()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("keys")
    return {kind: _keygen(tmp, kind) for kind in ("ed25519", "rsa", "ecdsa")}


def test_real_keys_of_each_type_are_accepted_and_stripped(keys: dict[str, str]) -> None:
    spec = prepare(CloudInitRequest(ssh_authorized_keys=tuple(keys.values())), vm_name="web-1")
    assert spec.ssh_authorized_keys == tuple(k.strip() for k in keys.values())
    assert spec.hostname == "web-1"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("ssh-ed25519", "expected 'TYPE BASE64"),
        ("ssh-foo AAAAC3NzaC1lZDI1NTE5AAAAIA== x", "unknown key type"),
        ("ssh-ed25519 not*base64! x", "not valid base64"),
        # A real ed25519 blob pasted with the wrong type in front.
        ("ssh-rsa {ed} x", "not a ssh-rsa key"),
        ("ssh-ed25519 {ed}\nssh-ed25519 {ed}", "line break"),
        ("ssh-ed25519 " + base64.b64encode(struct.pack(">I", 11) + b"ssh-ed25519").decode(),
         "no key material"),
    ],
)
def test_bad_key_is_422_naming_its_index(keys: dict[str, str], bad: str, reason: str) -> None:
    blob = keys["ed25519"].split()[1]
    request = CloudInitRequest(ssh_authorized_keys=(keys["rsa"], bad.format(ed=blob)))
    with pytest.raises(InvalidSshKey) as caught:
        prepare(request, vm_name="vm")
    err = caught.value
    assert isinstance(err, InvalidRequest) and err.status == 422 and err.code == "invalid_ssh_key"
    assert err.details["index"] == 1 and "ssh_authorized_keys[1]" in err.message
    assert reason in err.message
    assert err.hint


def test_password_is_stored_only_as_sha512_crypt_hash() -> None:
    spec = prepare(CloudInitRequest(password="pa55 word"), vm_name="vm")
    assert spec.password_hash.startswith("$6$") and verify("pa55 word", spec.password_hash)
    assert b"pa55 word" not in msgspec.json.encode(spec)


def test_empty_password_is_refused() -> None:
    with pytest.raises(InvalidPassword):
        prepare(CloudInitRequest(password=""), vm_name="vm")


def test_no_password_means_no_hash() -> None:
    assert prepare(CloudInitRequest(), vm_name="vm").password_hash == ""


@pytest.mark.parametrize(
    "text",
    [
        "",
        "#cloud-config\npackages: [htop]\nruncmd:\n  - echo hi\n",
        "#cloud-config\n",
        "#!/bin/sh\necho hello > /tmp/hello\n",
        "## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }}\n",
        "#include\nhttp://example.invalid/ud\n",
        (
            'Content-Type: multipart/mixed; boundary="XX"\nMIME-Version: 1.0\n\n--XX\n'
            "Content-Type: text/cloud-config\n\npackages: [htop]\n--XX\n"
            "Content-Type: text/x-shellscript\n\n#!/bin/sh\necho hi\n--XX--\n"
        ),
    ],
)
def test_accepted_user_data_formats(text: str) -> None:
    validate_user_data(text)


def test_broken_cloud_config_yaml_reports_line_and_column() -> None:
    text = "#cloud-config\npackages:\n  - htop\n runcmd: [oops\n"
    with pytest.raises(InvalidUserData) as caught:
        validate_user_data(text)
    err = caught.value
    assert err.status == 422 and err.code == "invalid_user_data"
    # Lines count from the '#cloud-config' line, as an editor shows them.
    assert err.details["line"] == 4 and err.details["column"] == 2
    assert "line 4, column 2" in err.message


def test_cloud_config_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(InvalidUserData, match="mapping"):
        validate_user_data("#cloud-config\n- a\n- b\n")


def test_plain_text_user_data_is_refused_at_line_1() -> None:
    with pytest.raises(InvalidUserData) as caught:
        validate_user_data("packages: [htop]\n")
    assert caught.value.details == {"line": 1, "column": 1}


def test_broken_yaml_inside_a_mime_part_is_refused() -> None:
    text = (
        'Content-Type: multipart/mixed; boundary="XX"\nMIME-Version: 1.0\n\n--XX\n'
        "Content-Type: text/cloud-config\n\npackages: [htop\n--XX--\n"
    )
    with pytest.raises(InvalidUserData, match="part"):
        validate_user_data(text)


def test_vendor_data_is_checked_with_its_own_code() -> None:
    with pytest.raises(InvalidVendorData) as caught:
        prepare(CloudInitRequest(vendor_data="hello"), vm_name="vm")
    assert caught.value.code == "invalid_vendor_data" and "vendor_data" in caught.value.message


@pytest.mark.parametrize(
    "text",
    [
        "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n",
        "version: 2\nethernets:\n  id0:\n    match: {macaddress: '52:54:00:12:34:56'}\n"
        "    addresses: [10.0.0.5/24]\n",
        "",
    ],
)
def test_network_config_v2_is_accepted(text: str) -> None:
    validate_network_config(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("network:\n  version: 1\n  config: []\n", "version must be 2"),
        ("version: 2\nethernet:\n  eth0: {}\n", "unknown keys"),
        ("version: 2\nethernets: [eth0]\n", "must map device ids"),
        ("version: 2\nethernets:\n  eth0: dhcp\n", "'ethernets.eth0' must be a mapping"),
        ("- version: 2\n", "mapping"),
        ("version: 2\nethernets:\n  eth0: {dhcp4: true\n", "line 4"),
    ],
)
def test_bad_network_config_is_422(text: str, fragment: str) -> None:
    with pytest.raises(InvalidNetworkConfig) as caught:
        prepare(CloudInitRequest(network_config=text), vm_name="vm")
    assert caught.value.status == 422 and fragment in caught.value.message
