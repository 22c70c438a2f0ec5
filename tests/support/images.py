"""The image library for tests: ``serve()`` in-process on a real NATS (restartable) or
``lq-image-library`` as a subprocess, and polls on an image's state."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import nats

from limiquantix.common import nats_auth
from limiquantix.common import settings as settings_mod
from limiquantix.common.images import ImageRecord
from limiquantix.common.library_tokens import bearer, load_or_create_secret, sign
from limiquantix.common.nats_client import ensure_jetstream
from limiquantix.common.nats_server import NatsServer, free_port
from limiquantix.common.settings import Settings
from limiquantix.image_library.client import ImageLibraryClient
from limiquantix.image_library.main import serve
from tests.support.origin import ALLOW_LOCAL_ORIGINS, LOCAL_ORIGINS


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


def library_on(server: NatsServer, root: Path, **overrides: Any) -> Library:
    """The library with its own identity; JetStream laid out by the gateway's."""
    return Library(root, server.url, setup_connect=server.connect_options(nats_auth.API),
                   nats_creds=str(server.creds_for(nats_auth.IMAGE_LIBRARY)), **overrides)


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



class LibraryProcess:
    """lq-image-library as a subprocess (the console script users run)."""

    def __init__(self, data_dir: Path, server: NatsServer) -> None:
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LQ_")}
        self.env.update(LQ_NATS_URL=server.url, LQ_DATA_DIR=str(data_dir),
                        LQ_NATS_CREDS=str(server.creds_for(nats_auth.IMAGE_LIBRARY)),
                        LQ_IMAGE_LIBRARY_PORT=str(self.port), LQ_LOG_FORMAT="json",
                        **ALLOW_LOCAL_ORIGINS)
        self.log = data_dir / "library.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "lq-image-library"), env=self.env,
                stdout=out, stderr=out,
            )
        async with aiohttp.ClientSession() as http:
            for _ in range(400):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as response:
                        if response.status == 200:
                            return
                assert self.process.returncode is None, self.log.read_text()
                await asyncio.sleep(0.05)
        raise TimeoutError(self.log.read_text())

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> int | None:
        if self.process is None or self.process.returncode is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        return await asyncio.wait_for(self.process.wait(), 20)
