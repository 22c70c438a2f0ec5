"""Limiquantix: open VM provisioning over NATS, libvirt and cloud-init."""

__version__ = "0.1.0"
