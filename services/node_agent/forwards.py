"""Host ports for a VM's user-mode forwards (SSH first), picked free at create time.

The ports are stored in the VM record, so a redelivered create, a restart or a redefinition
reuses them (the SSH command shown to the user stays true).
"""

from __future__ import annotations

import socket

from limiquantix.common.vms import NetworkSpec, PortForward

SSH_PORT = 22
FORWARDING_MODES = frozenset({"user", "isolated"})


def free_port(host: str) -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wanted_forwards(network: NetworkSpec) -> tuple[PortForward, ...]:
    """The forwards a VM asks for: SSH (when ``network.ssh``) and the explicit ones."""
    if network.mode not in FORWARDING_MODES:
        return ()
    forwards = list(network.forwards)
    if network.ssh and all(f.guest_port != SSH_PORT for f in forwards):
        forwards.insert(0, PortForward(guest_port=SSH_PORT, name="ssh"))
    return tuple(forwards)


def bind_forwards(network: NetworkSpec, host: str) -> tuple[PortForward, ...]:
    """The wanted forwards with every ``host_port`` 0 replaced by a free port on ``host``."""
    return tuple(
        f if f.host_port else PortForward(guest_port=f.guest_port, host_port=free_port(host),
                                          name=f.name)
        for f in wanted_forwards(network)
    )


def ssh_command(forwards: tuple[PortForward, ...], user: str, host: str) -> str:
    """How a user reaches the VM over SSH, or "" when no forward leads to port 22."""
    for forward in forwards:
        if forward.guest_port == SSH_PORT and forward.host_port:
            return f"ssh -p {forward.host_port} {user}@{host}"
    return ""
