"""Fixtures: a real nats-server, the image library's serve() in-process, a local origin."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from nats.aio.client import Client

from limiquantix.common import nats_auth
from limiquantix.common import settings as settings_mod
from limiquantix.common.images import ImageRecord
from limiquantix.common.library_tokens import bearer, load_or_create_secret, sign
from limiquantix.common.nats_client import ensure_jetstream
from limiquantix.common.nats_server import NatsServer, free_port
from limiquantix.common.settings import Settings
from limiquantix.image_library.client import ImageLibraryClient
from limiquantix.image_library.main import serve
from tests.support.origin import LOCAL_ORIGINS, Origin


def make_qcow2_with_data(path: Path, mib: int = 4) -> Path:
    """A qcow2 (qemu-img convert) holding ``mib`` MiB of random data: not a blank image."""
    raw = path.with_suffix(".raw")
    raw.write_bytes(os.urandom(mib << 20))
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(path)],
                   check=True)
    raw.unlink()
    return path


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Library:
    """The image library running in this process (serve() as a task), restartable."""

    def __init__(self, root: Path, nats_url: str, *,
                 setup_connect: dict[str, Any] | None = None, **overrides: Any) -> None:
        # How start() connects to lay out JetStream as the gateway would (its identity, when
        # the server has authentication).
        self.setup_connect = setup_connect or {"servers": [nats_url]}
        overrides.setdefault("import_allowed_networks", LOCAL_ORIGINS)
        self.settings: Settings = settings_mod.load({}, nats_url=nats_url, data_dir=str(root),
                                                    image_library_port=free_port(), **overrides)
        self.stop_event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self.settings.effective_image_library_url

    @property
    def store(self) -> Path:
        return Path(self.settings.data_dir) / "image-library"

    async def start(self) -> None:
        # The gateway creates streams and buckets (the library only waits for them): do its part.
        setup = await nats.connect(**self.setup_connect)
        try:
            await ensure_jetstream(setup.jetstream(),
                                   heartbeat_interval_s=self.settings.heartbeat_interval_s)
        finally:
            await setup.close()
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(serve(self.settings, self.stop_event))
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.task.done():
                    self.task.result()
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(self.url + "/healthz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise TimeoutError("image library did not start")

    async def stop(self) -> None:
        self.stop_event.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 30)
            self.task = None

    def auth(self, image_id: str, method: str = "GET", subject: str = "") -> dict[str, str]:
        """The header a gateway or node sends for ``method`` on ``image_id``."""
        token = sign(load_or_create_secret(self.settings), service="test", image_id=image_id,
                     method=method, subject=subject)
        return bearer(token)

    def session(self) -> aiohttp.ClientSession:
        """An HTTP client that signs each ``/images/{id}/file`` request as the gateway does."""

        async def signed(request: aiohttp.ClientRequest,
                         handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
            parts = request.url.path.split("/")
            if len(parts) == 4 and parts[1] == "images":
                request.headers.update(self.auth(parts[2], request.method))
            return await handler(request)

        return aiohttp.ClientSession(middlewares=(signed,))

    def leftovers(self, image_id: str) -> list[Path]:
        """Files of this image anywhere in the store."""
        return [p for p in self.store.rglob("*") if p.name.startswith(image_id)]


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A connection as the gateway (the identity that asks the image library)."""
    client = await nats.connect(**nats_server.connect_options(nats_auth.API))
    yield client
    await client.drain()


def library_on(server: NatsServer, root: Path, **overrides: Any) -> Library:
    """The library with its own identity; JetStream laid out by the gateway's."""
    return Library(root, server.url, setup_connect=server.connect_options(nats_auth.API),
                   nats_creds=str(server.creds_for(nats_auth.IMAGE_LIBRARY)), **overrides)


@pytest.fixture
async def library(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[Library]:
    running = library_on(nats_server, tmp_path / "library")
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
def client(nc: Client) -> ImageLibraryClient:
    return ImageLibraryClient(nc, timeout_s=10)


@pytest.fixture
async def origin(tmp_path: Path) -> AsyncIterator[Origin]:
    root = tmp_path / "origin"
    root.mkdir()
    async with Origin(root) as server:
        yield server


@pytest.fixture
def disk(origin: Origin) -> Path:
    """A 4 MiB-of-data qcow2 served by the origin as ``disk.qcow2``."""
    return make_qcow2_with_data(origin.root / "disk.qcow2")


async def wait_image(client: ImageLibraryClient, image_id: str, *states: str,
                     timeout_s: float = 30.0) -> ImageRecord:
    """Poll until the image reaches one of ``states``."""
    deadline = time.monotonic() + timeout_s
    record = await client.get(image_id)
    while time.monotonic() < deadline:
        record = await client.get(image_id)
        if record.state in states:
            return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"image {image_id} not in {states}: {record}")
