"""``lq vm ssh``: where to connect, and a known_hosts entry checked against the API's fingerprints.

The API knows the guest's host key *fingerprints* (printed by cloud-init on the serial console),
not the keys. So the keys are fetched with ``ssh-keyscan``, fingerprinted here exactly as OpenSSH
does (SHA-256 of the key blob, unpadded base64), and only keys whose fingerprint the API reported
go into a temporary known_hosts file used with ``StrictHostKeyChecking=yes``. Without fingerprints
(guest not ready yet, or no cloud-init output), ssh falls back to trust on first use with a
warning, in a known_hosts file of lq's own keyed by the VM id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from limiquantix.cli.errors import SshUnavailable
from limiquantix.common.vms import VmRecord

KEYSCAN_TIMEOUT_S = 10
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]+")


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int
    user: str

    def command(self) -> str:
        port = f"-p {self.port} " if self.port != 22 else ""
        return f"ssh {port}{self.user}@{self.host}"


def target_of(record: VmRecord) -> SshTarget | None:
    """From the record's ``ssh_command`` when the API gave one, else its port-22 forward."""
    if record.ssh_command:
        parsed = _parse_ssh_command(record.ssh_command)
        if parsed is not None:
            return parsed
    for forward in record.forwards:
        if forward.guest_port == 22 and forward.host_port:
            host = record.vnc.host if record.vnc else "127.0.0.1"
            return SshTarget(host, forward.host_port, record.cloud_init.user)
    return None


def _parse_ssh_command(command: str) -> SshTarget | None:
    words = shlex.split(command)
    port, destination = 22, ""
    i = 1
    while i < len(words):
        if words[i] == "-p" and i + 1 < len(words):
            port, i = int(words[i + 1]), i + 2
            continue
        if not words[i].startswith("-"):
            destination = words[i]
        i += 1
    if "@" not in destination:
        return None
    user, _, host = destination.rpartition("@")
    return SshTarget(host, port, user)


def fingerprints_of(record: VmRecord) -> set[str]:
    """``SHA256:…`` fingerprints from lines like ``256 SHA256:abc root@vm (ED25519)``."""
    found: set[str] = set()
    for line in record.guest.ssh_host_keys:
        found.update(_FINGERPRINT.findall(line))
    return found


def fingerprint(key_base64: str) -> str:
    """OpenSSH's ``SHA256:`` fingerprint of a public key blob (as ``ssh-keygen -l`` prints)."""
    digest = hashlib.sha256(base64.b64decode(key_base64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def matching_keys(keyscan_output: str, wanted: set[str]) -> list[tuple[str, str]]:
    """(type, base64) of every scanned key whose fingerprint the API reported."""
    keys = []
    for line in keyscan_output.splitlines():
        parts = line.split()
        if len(parts) < 3 or line.startswith("#"):
            continue
        try:
            if fingerprint(parts[2]) in wanted:
                keys.append((parts[1], parts[2]))
        except (binascii.Error, ValueError):
            continue
    return keys


def keyscan(target: SshTarget) -> str:
    """The host keys the server at ``target`` offers right now."""
    tool = shutil.which("ssh-keyscan")
    if tool is None:
        raise SshUnavailable("ssh-keyscan is not installed", hint="Install openssh-client.")
    try:
        result = subprocess.run(
            [tool, "-T", "5", "-p", str(target.port), target.host],
            capture_output=True, text=True, timeout=KEYSCAN_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired:
        return ""
    return result.stdout


def alias_of(record: VmRecord) -> str:
    """The name known_hosts files use for this VM: stable, and unique even when ports are reused."""
    return f"lq-{record.id}"


def tofu_known_hosts() -> Path:
    """lq's own known_hosts for trust on first use (keys stored under each VM's alias)."""
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    path = state / "lq" / "known_hosts"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def ssh_argv(target: SshTarget, alias: str, known_hosts: Path, *, verified: bool,
             identity: str = "", remote: tuple[str, ...] = ()) -> list[str]:
    """The ssh command line; ``remote`` (what came after ``--``) is the command to run."""
    checking = "yes" if verified else "accept-new"
    options = ["-o", f"HostKeyAlias={alias}", "-o", f"UserKnownHostsFile={known_hosts}",
               "-o", f"StrictHostKeyChecking={checking}"]
    port = ["-p", str(target.port)] if target.port != 22 else []
    key = ["-i", identity] if identity else []
    return ["ssh", *port, *key, *options, f"{target.user}@{target.host}", *remote]
