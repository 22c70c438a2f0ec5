"""SIGKILL of the image library process mid-import: the restarted service finishes it exactly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from limiquantix.common import nats_auth, nats_client
from limiquantix.common.images import CreateImageRequest
from limiquantix.common.nats_server import NatsServer
from limiquantix.image_library.client import ImageLibraryClient
from tests.support.disks import sha256_file
from tests.support.images import LibraryProcess, wait_image
from tests.support.origin import Origin


@pytest.fixture
async def library_process(tmp_path: Path, nats_server: NatsServer
                          ) -> AsyncIterator[LibraryProcess]:
    # The gateway lays out JetStream; the library waits for it.
    async with nats_client.connect(nats_server.url, name="test",
                                   creds=str(nats_server.creds_for(nats_auth.API))) as setup:
        await nats_client.ensure_jetstream(setup.jetstream(), heartbeat_interval_s=1.0)
    running = LibraryProcess(tmp_path / "library", nats_server)
    await running.start()
    yield running
    await running.stop()


async def test_sigkill_mid_import_resumes_after_restart_with_no_corrupt_image(
    library_process: LibraryProcess, nc: Client, origin: Origin, disk: Path,
) -> None:
    client = ImageLibraryClient(nc, timeout_s=10)
    size = disk.stat().st_size
    record = await client.import_image(CreateImageRequest(
        source_url=origin.file_url("disk.qcow2", rate=1 << 20), sha256=sha256_file(disk),
    ))
    store = library_process.log.parent / "image-library"
    partial = store / "partial" / f"{record.id}.part"
    while not partial.exists() or partial.stat().st_size < size // 3:
        await asyncio.sleep(0.05)
    await library_process.kill()
    assert not (store / "files" / record.id).exists()  # never a half file in the catalog
    await library_process.start()
    active = await wait_image(client, record.id, "active", "error", timeout_s=60)
    assert active.state == "active", active.error
    assert sha256_file(store / "files" / record.id) == sha256_file(disk)
    assert any(r.startswith("bytes=") and r != "bytes=0-" for r in origin.ranges)
    assert await library_process.stop() == 0  # SIGTERM: drained, exit 0
