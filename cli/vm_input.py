"""Turning ``lq vm create`` flags into the ``POST /v1/vms`` body: keys, files, network, sizes."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

from limiquantix.cli.errors import LocalFileError, UsageError
from limiquantix.cli.sizes import to_gib, to_mib

_KEY_PREFIXES = ("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-")
NETWORK_MODES = ("none", "user", "isolated", "bridge", "network")


def read_text(path: str, what: str) -> str:
    file = Path(path).expanduser()
    try:
        return file.read_text()
    except FileNotFoundError:
        raise LocalFileError(f"{what} {file} does not exist") from None
    except (PermissionError, IsADirectoryError, UnicodeDecodeError) as exc:
        raise LocalFileError(f"cannot read {what} {file}: {exc}") from None


def ssh_keys(value: str) -> list[str]:
    """The public keys in a file (one per line, like authorized_keys) or a literal key."""
    if value.startswith(_KEY_PREFIXES):
        return [value.strip()]
    text = read_text(value, "SSH key file")
    if "PRIVATE KEY" in text:
        raise LocalFileError(
            f"{value} is a private key", hint=f"Pass the public key instead, e.g. {value}.pub")
    keys = [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise LocalFileError(f"{value} holds no SSH public key")
    return keys


def prompt_password() -> str:
    """Asked twice without echo; never on the command line (it would land in shell history)."""
    first = getpass.getpass("Password for the VM user: ")
    if not first:
        raise UsageError("empty password", hint="Type a password, or drop --password-prompt.")
    if getpass.getpass("Again: ") != first:
        raise UsageError("the passwords do not match", hint="Run the command again.")
    return first


def network(value: str | None) -> dict[str, Any] | None:
    """``isolated``, ``user``, ``none``, ``bridge:br0`` or ``network:NAME``."""
    if value is None:
        return None
    mode, _, source = value.partition(":")
    if mode not in NETWORK_MODES:
        raise UsageError(f"unknown network {value!r}",
                         hint="Use none, user, isolated, bridge:BRIDGE or network:LIBVIRT-NET.")
    if mode in ("bridge", "network") and not source:
        raise UsageError(f"network {mode} needs a name: {mode}:NAME")
    body: dict[str, Any] = {"mode": mode}
    if source:
        body["source"] = source
    return body


def image_ref(value: str) -> str:
    """A catalog id as given; a relative path made absolute (the node resolves paths itself)."""
    if os.sep in value and not os.path.isabs(value) and os.path.exists(value):
        return os.path.abspath(value)
    return value


def labels(values: list[str]) -> dict[str, str]:
    """``--label KEY=VALUE`` options as the request's ``labels`` (a bare KEY: empty value)."""
    return dict(value.partition("=")[::2] for value in values)


def create_body(args: Any) -> dict[str, Any]:
    """The request body from parsed ``vm create`` arguments (only what was given)."""
    body: dict[str, Any] = {"name": args.name}
    if getattr(args, "description", None):
        body["description"] = args.description
    if getattr(args, "label", None):
        body["labels"] = labels(args.label)
    if args.image is not None:
        body["image"] = image_ref(args.image)
    if args.cpus is not None:
        body["vcpus"] = args.cpus
    if args.memory is not None:
        body["memory_mib"] = to_mib(args.memory)
    if args.disk is not None:
        body["disk_gib"] = to_gib(args.disk)
    if getattr(args, "max_cpus", None) is not None:  # hot-plug ceilings (docs/day2.md)
        body["max_vcpus"] = args.max_cpus
    if getattr(args, "max_memory", None) is not None:
        body["max_memory_mib"] = to_mib(args.max_memory)
    if args.node:
        body["node"] = args.node
    cloud_init: dict[str, Any] = {}
    if args.user:
        cloud_init["user"] = args.user
    keys = [key for value in args.ssh_key or [] for key in ssh_keys(value)]
    if keys:
        cloud_init["ssh_authorized_keys"] = keys
    if args.password_prompt:
        cloud_init["password"] = prompt_password()
    if args.ssh_password_auth:
        cloud_init["ssh_pwauth"] = True
    if args.user_data:
        cloud_init["user_data"] = read_text(args.user_data, "user-data file")
    if args.hostname:
        cloud_init["hostname"] = args.hostname
    if getattr(args, "no_guest_agent", False):
        cloud_init["guest_agent"] = False  # docs/guest-agent.md
    if cloud_init:
        body["cloud_init"] = cloud_init
    net = network(args.network)
    if net is not None:
        body["network"] = net
    from limiquantix.cli import windows_input  # it reads files with read_text from here

    windows_input.apply(args, body)
    return body
