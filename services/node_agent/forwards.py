"""Host ports for a VM's user-mode forwards (SSH first), picked free at create time.

Host ports come from ``LQ_FORWARD_PORT_RANGE`` only (``common/forward_ports.py``): a port a
command asks for outside it is refused here too, whatever the gateway let through; a free one
is picked inside it, never from the kernel's ephemeral range (which overlaps nothing we
configure, and could hand out a port a service is about to bind).

The ports are stored in the VM record, so a redelivered create, a restart or a redefinition
reuses them (the SSH command shown to the user stays true).
"""

from __future__ import annotations

import random
import socket

from limiquantix.common.forward_ports import check_host_ports, port_range, reserved_ports
from limiquantix.common.settings import Settings
from limiquantix.common.vms import NetworkSpec, PortForward
from limiquantix.node_agent.errors import NodeAgentError

SSH_PORT = 22
FORWARDING_MODES = frozenset({"user", "isolated"})


class NoFreeForwardPort(NodeAgentError):
    """Every port of the forward range is taken on this node."""

    code = "no_free_forward_port"
    status = 503
    default_hint = "Delete unused VMs or widen LQ_FORWARD_PORT_RANGE on the node."


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str, settings: Settings, taken: frozenset[int] = frozenset()) -> int:
    """A TCP port of the forward range on ``host`` that was free a moment ago.

    Probing starts at a random port, so concurrent creates rarely try the same one.
    """
    ports = port_range(settings)
    skip = taken | reserved_ports(settings)
    start = random.randrange(len(ports))
    for i in range(len(ports)):
        port = ports[(start + i) % len(ports)]
        if port not in skip and _bindable(host, port):
            return port
    raise NoFreeForwardPort(f"no free port in {ports.start}-{ports.stop - 1} on {host}")


def wanted_forwards(network: NetworkSpec) -> tuple[PortForward, ...]:
    """The forwards a VM asks for: SSH (when ``network.ssh``) and the explicit ones."""
    if network.mode not in FORWARDING_MODES:
        return ()
    forwards = list(network.forwards)
    if network.ssh and all(f.guest_port != SSH_PORT for f in forwards):
        forwards.insert(0, PortForward(guest_port=SSH_PORT, name="ssh"))
    return tuple(forwards)


def bind_forwards(network: NetworkSpec, host: str,
                  settings: Settings) -> tuple[PortForward, ...]:
    """The wanted forwards, each ``host_port`` checked against the range, 0 replaced by a free
    port in it (ForwardPortRefused for a port outside)."""
    wanted = wanted_forwards(network)
    check_host_ports((f.host_port for f in wanted), settings)
    taken = frozenset(f.host_port for f in wanted if f.host_port)
    bound: list[PortForward] = []
    for f in wanted:
        if not f.host_port:
            port = free_port(host, settings, taken)
            taken |= {port}
            f = PortForward(guest_port=f.guest_port, host_port=port, name=f.name)
        bound.append(f)
    return tuple(bound)


def ssh_command(forwards: tuple[PortForward, ...], user: str, host: str) -> str:
    """How a user reaches the VM over SSH, or "" when no forward leads to port 22."""
    for forward in forwards:
        if forward.guest_port == SSH_PORT and forward.host_port:
            return f"ssh -p {forward.host_port} {user}@{host}"
    return ""
