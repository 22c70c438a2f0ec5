"""``lq vm create`` flags for seed formats and Windows guests (docs/windows.md).

``--windows FILE`` holds the ``windows`` section as YAML (or JSON); the ``--windows-*`` flags
set single fields over it. The Administrator password and a domain join account's password are
prompted for (or read from the file), never taken from the command line, where they would land
in shell history.
"""

from __future__ import annotations

import getpass
from typing import Any

import yaml

from limiquantix.cli.errors import LocalFileError, UsageError
from limiquantix.cli.vm_input import read_text

# flag attribute -> windows section field
_FIELDS = {
    "windows_computer_name": "computer_name",
    "windows_timezone": "timezone",
    "windows_locale": "locale",
    "windows_product_key": "product_key",
}


def _file_section(path: str) -> dict[str, Any]:
    text = read_text(path, "windows file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LocalFileError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LocalFileError(f"{path} must be a mapping of windows settings",
                             hint="e.g. 'computer_name: WEB01' and 'timezone: UTC', one a line")
    return data


def _prompt() -> str:
    first = getpass.getpass("Windows administrator password: ")
    if not first:
        raise UsageError("empty password", hint="Type a password, or drop the prompt flag.")
    if getpass.getpass("Again: ") != first:
        raise UsageError("the passwords do not match", hint="Run the command again.")
    return first


def windows_section(args: Any) -> dict[str, Any] | None:
    """The ``windows`` section from ``--windows FILE`` and the ``--windows-*`` flags; None when
    none was given."""
    path = getattr(args, "windows", None)
    section = _file_section(path) if path else {}
    for flag, field in _FIELDS.items():
        value = getattr(args, flag, None)
        if value is not None:
            section[field] = value
    if getattr(args, "windows_winrm", False):
        section["enable_winrm"] = True
    if getattr(args, "windows_no_rdp", False):
        section["enable_rdp"] = False
    if getattr(args, "windows_secure_boot", False):
        section["secure_boot"] = True
    commands = getattr(args, "windows_first_logon", None)
    if commands:
        section["first_logon_commands"] = [*section.get("first_logon_commands", []), *commands]
    if getattr(args, "windows_password_prompt", False):
        section["admin_password"] = _prompt()
    join = _domain_join(args, section.get("domain_join"))
    if join is not None:
        section["domain_join"] = join
    return section if path or section else None


def _domain_join(args: Any, from_file: object) -> dict[str, Any] | None:
    """The ``domain_join`` section: the file's, overridden by ``--windows-join-*``; the join
    account's password is prompted for when the file has none (never a flag)."""
    join = dict(from_file) if isinstance(from_file, dict) else {}
    for flag, field in (("windows_join_domain", "domain"), ("windows_join_user", "user"),
                        ("windows_join_ou", "ou")):
        value = getattr(args, flag, None)
        if value is not None:
            join[field] = value
    if not join:
        return None
    if not join.get("domain") or not join.get("user"):
        raise UsageError("a domain join needs the domain and an account",
                         hint="Give --windows-join-domain DOMAIN and --windows-join-user USER.")
    if not join.get("password"):
        join["password"] = getpass.getpass(
            f"Password of {join['user']} (joins {join['domain']}): ")
        if not join["password"]:
            raise UsageError("empty join password", hint="Type the join account's password.")
    return join


def apply(args: Any, body: dict[str, Any]) -> None:
    """Add ``os_type``, ``windows`` and the seed format flags to a create body."""
    if getattr(args, "os_type", None):
        body["os_type"] = args.os_type
    section = windows_section(args)
    if section is not None:
        body["windows"] = section
        body.setdefault("os_type", "windows")
    cloud_init: dict[str, Any] = {}
    if getattr(args, "datasource", None):
        cloud_init["datasource"] = args.datasource
    if getattr(args, "network_config", None):
        cloud_init["network_config"] = read_text(args.network_config, "network-config file")
    if cloud_init:
        body.setdefault("cloud_init", {}).update(cloud_init)
