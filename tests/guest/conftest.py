"""Fixtures of the real-guest tests: the cached Debian 12 image and libvirt's qemu:///system."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.support.guest_image import BuildFailed, ensure_image


@pytest.fixture(scope="session")
def guest_image() -> Path:
    """The bootable Debian 12 cloud image, built offline from the apt mirror on first use."""
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        pytest.skip("building the guest image needs root and debootstrap")
    try:
        return ensure_image()
    except BuildFailed as exc:
        pytest.fail(f"could not build the guest image: {exc}")


@pytest.fixture(scope="session")
def qemu_system() -> Iterator[libvirt.virConnect]:
    """A connection to the system libvirtd (started by scripts/libvirtd.sh if needed)."""
    subprocess.run(["bash", str(Path(__file__).parents[2] / "scripts/libvirtd.sh")],
                   check=True, capture_output=True)
    conn = libvirt.open("qemu:///system")
    try:
        yield conn
    finally:
        conn.close()
