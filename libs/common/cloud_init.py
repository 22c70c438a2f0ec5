"""Turns a client's cloud-init request into the stored spec: validated, password hashed.

Validation happens here, at the gateway, so a bad request is a 422 naming the fault (which key,
which line and column) instead of a guest that boots and silently ignores its configuration.
The plain password never leaves :func:`prepare`: only its SHA-512 crypt hash is stored.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.message
import email.policy
import secrets
import struct
from typing import Any

import yaml

from limiquantix.common.cloud_init_errors import (
    InvalidNetworkConfig,
    InvalidPassword,
    InvalidSshKey,
    InvalidUserData,
    InvalidVendorData,
)
from limiquantix.common.network_data import network_data
from limiquantix.common.sha512_crypt import sha512_crypt
from limiquantix.common.vms import CloudInitRequest, CloudInitSpec

# Public key algorithms OpenSSH accepts in authorized_keys (certificates included).
SSH_KEY_TYPES = frozenset({
    "ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com", "ssh-rsa-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com", "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
})
MAX_PASSWORD = 1024
# Validation only: the node writes the VM's real MAC into network_data.json.
PLACEHOLDER_MAC = "52:54:00:00:00:00"

# First-line markers cloud-init recognises besides '#cloud-config' and '#!' (user-data formats).
_OTHER_MARKERS = ("#include", "#cloud-boothook", "#part-handler", "#cloud-config-archive",
                  "#cloud-config-jsonp", "#upstart-job")
_JINJA_HEADER = "## template: jinja"
_NETWORK_V2_KEYS = frozenset({"version", "renderer", "ethernets", "bonds", "bridges", "vlans",
                              "wifis", "tunnels", "vrfs", "modems"})
_NETWORK_V2_DEVICE_KINDS = _NETWORK_V2_KEYS - {"version", "renderer"}


def hash_password(password: str) -> str:
    """SHA-512 crypt (``$6$``) hash with a random salt, the form cloud-init's ``passwd`` takes."""
    return sha512_crypt(password)


def new_instance_id(vm_id: str) -> str:
    """A fresh cloud-init instance-id: the next boot is a first boot again (config re-applied)."""
    return f"{vm_id}-{secrets.token_hex(4)}"


def validate_ssh_key(key: str, index: int) -> str:
    """The key, stripped, if it is ``type base64 [comment]`` with a blob of that type."""

    def bad(reason: str) -> InvalidSshKey:
        return InvalidSshKey(f"ssh_authorized_keys[{index}]: {reason}", index=index, reason=reason)

    stripped = key.strip()
    if "\n" in stripped or "\r" in stripped:
        raise bad("one key per entry: the key contains a line break")
    fields = stripped.split(None, 2)
    if len(fields) < 2:
        raise bad("expected 'TYPE BASE64 [COMMENT]'")
    key_type, blob_b64 = fields[0], fields[1]
    if key_type not in SSH_KEY_TYPES:
        raise bad(f"unknown key type {key_type[:40]!r}")
    try:
        blob = base64.b64decode(blob_b64, validate=True)
    except (binascii.Error, ValueError):
        raise bad("the key data is not valid base64") from None
    # The blob starts with its own algorithm name (RFC 4253 section 6.6): a string of
    # uint32 length + bytes. A mismatch means a truncated or mixed-up paste.
    if len(blob) < 4:
        raise bad("the key data is too short")
    (name_len,) = struct.unpack(">I", blob[:4])
    inner = blob[4:4 + name_len]
    if name_len > 64 or len(inner) != name_len or inner != key_type.encode():
        raise bad(f"the key data is not a {key_type} key")
    if len(blob) <= 4 + name_len:
        raise bad("the key data holds no key material")
    return stripped


def _yaml_error(exc: yaml.YAMLError, *, line_offset: int = 0) -> tuple[int | None, int | None, str]:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return None, None, str(problem)
    return mark.line + 1 + line_offset, mark.column + 1, str(problem)


def _check_cloud_config(text: str, error: type[InvalidUserData], where: str,
                        line_offset: int = 0) -> None:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line, column, problem = _yaml_error(exc, line_offset=line_offset)
        place = f" at line {line}, column {column}" if line is not None else ""
        raise error(f"{where} is not valid YAML{place}: {problem}", line=line,
                    column=column) from None
    if data is not None and not isinstance(data, dict):
        raise error(f"{where}: #cloud-config must be a YAML mapping, not {type(data).__name__}",
                    line=1 + line_offset, column=1)


def _check_multipart(text: str, error: type[InvalidUserData], where: str) -> None:
    message = email.message_from_string(text, policy=email.policy.compat32)
    if not message.is_multipart():
        raise error(f"{where}: a MIME document must be multipart/mixed", line=1, column=1)
    for number, part in enumerate(message.walk()):
        if part.get_content_type() != "text/cloud-config":
            continue
        payload = part.get_payload(decode=True)
        body = payload.decode(errors="replace") if isinstance(payload, bytes) else ""
        _check_cloud_config(body, error, f"{where} part {number}")


def validate_user_data(text: str, *, error: type[InvalidUserData] = InvalidUserData,
                       where: str = "user_data") -> None:
    """Raise ``error`` unless ``text`` is empty, ``#cloud-config`` YAML, a script or multipart."""
    if not text.strip():
        return
    first, _, rest = text.partition("\n")
    first = first.rstrip("\r")
    line_offset = 1
    if first.strip().lower() == _JINJA_HEADER:
        # A Jinja template is only YAML after rendering in the guest: check its kind only.
        kind, _, _ = rest.partition("\n")
        if kind.startswith(("#cloud-config", "#!")):
            return
        raise error(f"{where}: a jinja template must be '#cloud-config' or '#!' on line 2",
                    line=2, column=1)
    if first.startswith("#!"):
        return
    if first.rstrip() == "#cloud-config":
        _check_cloud_config(rest, error, where, line_offset)
        return
    if first.startswith(_OTHER_MARKERS):
        return
    head = text[:4096].lower()
    if "content-type:" in head and "multipart/" in head:
        _check_multipart(text, error, where)
        return
    raise error(
        f"{where}: the first line must be '#cloud-config' or '#!' (a script), or the document "
        f"MIME multipart; got {first[:40]!r}", line=1, column=1,
    )


def _network_fault(message: str, line: int | None = None,
                   column: int | None = None) -> InvalidNetworkConfig:
    return InvalidNetworkConfig(f"network_config: {message}", line=line, column=column)


def validate_network_config(text: str) -> None:
    """Raise InvalidNetworkConfig unless ``text`` is empty or network-config version 2."""
    if not text.strip():
        return
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line, column, problem = _yaml_error(exc)
        raise _network_fault(f"not valid YAML at line {line}, column {column}: {problem}",
                             line, column) from None
    if not isinstance(data, dict):
        raise _network_fault("must be a YAML mapping", 1, 1)
    config = data.get("network", data)
    if not isinstance(config, dict):
        raise _network_fault("'network' must be a mapping")
    if config.get("version") != 2:
        raise _network_fault(f"version must be 2, got {config.get('version')!r}")
    unknown = sorted(str(k) for k in config if k not in _NETWORK_V2_KEYS)
    if unknown:
        raise _network_fault(f"unknown keys {unknown}; version 2 has "
                             f"{sorted(_NETWORK_V2_KEYS)}")
    for kind in _NETWORK_V2_DEVICE_KINDS & config.keys():
        devices = config[kind]
        if not isinstance(devices, dict):
            raise _network_fault(f"'{kind}' must map device ids to their settings")
        for device_id, settings in devices.items():
            if not isinstance(settings, dict):
                raise _network_fault(f"'{kind}.{device_id}' must be a mapping")


def validate(request: CloudInitRequest) -> tuple[str, ...]:
    """Check every part of ``request``; returns the SSH keys, normalised (stripped)."""
    keys = tuple(validate_ssh_key(k, i) for i, k in enumerate(request.ssh_authorized_keys))
    if request.password is not None and not 0 < len(request.password) <= MAX_PASSWORD:
        raise InvalidPassword("password must be 1 to 1024 characters long")
    validate_user_data(request.user_data)
    validate_user_data(request.vendor_data, error=InvalidVendorData, where="vendor_data")
    validate_network_config(request.network_config)
    if request.datasource == "configdrive":  # what network_data.json cannot carry: 422 now
        network_data(request.network_config, nic_mac=PLACEHOLDER_MAC)
    return keys


def prepare(request: CloudInitRequest, *, vm_name: str) -> CloudInitSpec:
    """Validate ``request`` (raises InvalidRequest subclasses) and return what is stored."""
    keys = validate(request)
    return CloudInitSpec(
        user=request.user,
        ssh_authorized_keys=keys,
        password_hash=hash_password(request.password) if request.password else "",
        ssh_pwauth=request.ssh_pwauth,
        hostname=request.hostname or vm_name,
        user_data=request.user_data,
        network_config=request.network_config,
        vendor_data=request.vendor_data,
        locale=request.locale,
        datasource=request.datasource,
        guest_agent=request.guest_agent,
    )
