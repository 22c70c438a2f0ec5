"""Hooks and fixtures shared by every test: markers and time limits by kind of test, and the
whole system started for real (subprocesses), per test. Helpers live in ``tests/support``."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import nats
import pytest
from nats.aio.client import Client

from limiquantix.common import nats_auth, nats_client
from limiquantix.common.nats_server import NatsServer
from limiquantix.local.stack import Stack
from tests.support.disks import make_qcow2_with_data
from tests.support.flows import FAST_ENV
from tests.support.marks import MARK_TIMEOUTS_S, QEMU_MARKS, STACK_FIXTURES
from tests.support.origin import Origin


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the golden files (domain XML, seed ISO files, the OpenAPI "
                          "document) from the current output instead of comparing")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests that start the whole system ``stack``, and give slow marks a longer timeout
    (unless the test sets its own with ``pytest.mark.timeout`` or ``--timeout`` is given)."""
    explicit_timeout = config.getoption("timeout", None) is not None
    for item in items:
        if STACK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)
        if any(item.get_closest_marker(mark) for mark in QEMU_MARKS):
            # Meant to make one worker run every test that boots QEMU, one after another
            # (``--dist loadgroup``): two TCG guests on a 2-core host each boot at half speed, and
            # a module's shared guest must stay on one worker. Measured: pytest-xdist 3.8 under
            # pytest 9 ignores the group (it renames ``item._nodeid``, which pytest 9 no longer
            # reads), so scripts/test.sh's second phase runs these tests without workers.
            item.add_marker(pytest.mark.xdist_group("qemu"))
        if explicit_timeout or item.get_closest_marker("timeout") is not None:
            continue
        limits = [s for mark, s in MARK_TIMEOUTS_S.items() if item.get_closest_marker(mark)]
        if limits:
            item.add_marker(pytest.mark.timeout(max(limits)))


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """Rewrite golden files from the current output (``--update-golden`` or
    ``LQ_UPDATE_GOLDEN=1``) instead of comparing with them; see tests/support/golden.py."""
    flag = bool(request.config.getoption("--update-golden", default=False))
    return flag or os.environ.get("LQ_UPDATE_GOLDEN") == "1"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory under /var/tmp that libvirt's QEMU user can read (tests on real QEMU keep
    their VM files there; pytest's tmp_path is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="lq-e2e-", dir="/var/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


# JetStream's store of the per-test nats-server lives in memory (tmpfs) when there is one: the
# server syncs its stream metadata to disk as it creates the ~13 streams and buckets a test lays
# out, which made each test's set-up ~40 % slower on disk. Nothing a test checks is on disk.
MEMORY_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A real nats-server configured as in production: identities ``api``, ``image-library``
    (``add_node`` for nodes), each with its permissions, anonymous clients refused.

    Test clients connect as the identity they play (``connect_options(identity)``, or
    ``creds_for(identity)`` as ``LQ_NATS_CREDS``); the suite that plays the gateway lays out
    JetStream with its own heartbeat interval (``ensure_jetstream``).
    """
    store = Path(tempfile.mkdtemp(prefix="lq-test-jetstream-", dir=MEMORY_DIR)
                 ) if MEMORY_DIR else tmp_path / "nats" / "jetstream"
    try:
        async with NatsServer(store, auth_dir=tmp_path / "nats",
                              log_file=tmp_path / "nats" / "nats.log") as server:
            yield server
    finally:
        shutil.rmtree(store, ignore_errors=True)


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A NATS connection as the gateway (identity ``api``), JetStream laid out as the gateway
    does (heartbeat interval 1 s). Sub-folders may override it (the image library's tests)."""
    client = await nats.connect(**nats_server.connect_options(nats_auth.API))
    await nats_client.ensure_jetstream(client.jetstream(), heartbeat_interval_s=1.0)
    yield client
    await client.drain()


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
async def origin(tmp_path: Path) -> AsyncIterator[Origin]:
    """An HTTP server on 127.0.0.1 serving ``origin.root`` (the place images are imported
    from), with ranges and request counts."""
    root = tmp_path / "origin"
    root.mkdir()
    async with Origin(root) as server:
        yield server


@pytest.fixture
def disk(origin: Origin) -> Path:
    """A 4 MiB-of-data qcow2 served by the origin as ``disk.qcow2``."""
    return make_qcow2_with_data(origin.root / "disk.qcow2")


@pytest.fixture
def qemu_tmp(shared_dir: Path) -> Path:
    """``shared_dir`` under the name the older real-QEMU tests use."""
    return shared_dir
