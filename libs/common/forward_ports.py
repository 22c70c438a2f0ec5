"""Which host ports a VM's port forwards may take: a configured range, never a service's port.

A forward binds a host port on the node; unchecked, a user could ask for 22, the API's or
NATS's port (and have a guest answer there). Host ports come from ``LQ_FORWARD_PORT_RANGE``
only, minus the ports Limiquantix's own services listen on. The gateway checks a request
(422 with a hint) and the node checks again before binding (it trusts no message).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from limiquantix.common.errors import InvalidRequest
from limiquantix.common.settings import Settings


class ForwardPortRefused(InvalidRequest):
    """A forward asked for a host port outside the configured range (or a service's port)."""

    code = "forward_port_refused"
    default_hint = ("Leave host_port out (or 0): the node picks a free port in its range; or "
                    "choose one inside LQ_FORWARD_PORT_RANGE.")


def port_range(settings: Settings) -> range:
    """The ports of ``LQ_FORWARD_PORT_RANGE`` (``low-high``, inclusive)."""
    text = settings.forward_port_range
    try:
        low, high = (int(part) for part in text.split("-", 1))
    except ValueError:
        raise ValueError(f"LQ_FORWARD_PORT_RANGE must be low-high, not {text!r}") from None
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"LQ_FORWARD_PORT_RANGE {text!r} is not within 1-65535")
    return range(low, high + 1)


def reserved_ports(settings: Settings) -> frozenset[int]:
    """Ports our services listen on: never given to a forward, even inside the range."""
    ports = {settings.api_port, settings.image_library_port}
    for url in settings.nats_url.split(","):
        try:
            port = urlsplit(url.strip()).port
        except ValueError:
            continue
        ports.add(port or 4222)
    return frozenset(ports)


def allowed(port: int, settings: Settings) -> bool:
    """True when a forward may bind host ``port``."""
    return port in port_range(settings) and port not in reserved_ports(settings)


def check_host_ports(host_ports: Iterable[int], settings: Settings) -> None:
    """Raise ForwardPortRefused unless every non-zero host port is allowed."""
    ports = port_range(settings)
    for port in host_ports:
        if port and not allowed(port, settings):
            raise ForwardPortRefused(
                f"host_port {port} is outside the forward range {ports.start}-{ports.stop - 1}"
                if port not in ports else f"host_port {port} is a Limiquantix service's port",
                host_port=port, low=ports.start, high=ports.stop - 1,
            )
