"""Fixtures borrowed for metrics tests: the console's gateway app on a real NATS and a real QEMU
display, and an in-process node agent on libvirt's test driver."""

from tests.console.conftest import gateway, http, make_gateway, qemu  # noqa: F401
from tests.node_agent.conftest import harness  # noqa: F401
