"""Fixtures shared by every test: the whole system started for real (subprocesses), per test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from limiquantix.common.nats_server import NatsServer
from limiquantix.local.stack import Stack

# Short intervals so liveness and redelivery are observable within a test's time.
FAST_ENV = {
    "LQ_HEARTBEAT_INTERVAL_S": "1",
    "LQ_RECONCILE_INTERVAL_S": "2",
    "LQ_COMMAND_ACK_WAIT_S": "3",
    "LQ_STOP_TIMEOUT_S": "5",
    "LQ_LOG_LEVEL": "debug",
    # Tests make their images with qemu-img in their temp dirs and name them by path: the
    # operator's opt-in for node images (off in production unless LQ_HOST_IMAGE_DIRS is set).
    "LQ_HOST_IMAGE_DIRS": "/tmp,/var/tmp",
    # ... and serve their imports from local HTTP servers (the import address policy refuses
    # loopback by default; tests/security checks that refusal on stacks of its own).
    "LQ_IMPORT_ALLOWED_NETWORKS": "127.0.0.0/8",
}


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A real nats-server configured as in production: identities ``api``, ``image-library``
    (``add_node`` for nodes), each with its permissions, anonymous clients refused.

    Test clients connect as the identity they play (``connect_options(identity)``, or
    ``creds_for(identity)`` as ``LQ_NATS_CREDS``); the suite that plays the gateway lays out
    JetStream with its own heartbeat interval (``ensure_jetstream``).
    """
    async with NatsServer(tmp_path / "nats" / "jetstream", auth_dir=tmp_path / "nats",
                          log_file=tmp_path / "nats" / "nats.log") as server:
        yield server


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """NATS + image library + one node agent (libvirt test driver) + API."""
    async with Stack(tmp_path / "stack", extra_env=FAST_ENV) as running:
        yield running


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP session on the stack's API, authenticated."""
    async with aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as session:
        yield session


@pytest.fixture
def qemu_tmp() -> Iterator[Path]:
    """A temp dir QEMU (user libvirt-qemu) can traverse; pytest's tmp_path is 0700 at the top."""
    path = Path(tempfile.mkdtemp(prefix="lq-e2e-", dir="/var/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
