"""The console fixtures (a gateway app on a real NATS, a real QEMU display) for metrics tests."""

from tests.console.conftest import gateway, http, make_gateway, qemu  # noqa: F401
