"""Fixtures of the real-guest tests: the cached Debian 12 image and one whole system per module
on libvirt's qemu:///system with that image imported (``guest_stack``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support.guest_image import BuildFailed, ensure_image
from tests.support.guest_vm import GuestStack, running_guest_stack


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
def system_libvirtd() -> None:
    """The system libvirtd the guests run under (started by scripts/libvirtd.sh if needed)."""
    subprocess.run(["bash", str(Path(__file__).parents[2] / "scripts/libvirtd.sh")],
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def guest_stack_env() -> dict[str, str]:
    """Settings a module adds to ``GUEST_STACK_ENV`` (a module overrides this fixture)."""
    return {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def guest_stack(guest_image: Path, guest_stack_env: dict[str, str],
                      system_libvirtd: None,
                      request: pytest.FixtureRequest) -> AsyncIterator[GuestStack]:
    """The whole system on qemu:///system with the guest image imported, for one module (its
    tests carry ``pytest.mark.asyncio(loop_scope="module")``); the VMs they create on it are
    removed at the end, and the logs kept when one of them failed."""
    session = request.session
    failed_before = session.testsfailed
    async with running_guest_stack(guest_image, request.module.__name__.rsplit(".", 1)[-1],
                                   extra_env=guest_stack_env,
                                   failed=lambda: session.testsfailed > failed_before) as env:
        yield env
