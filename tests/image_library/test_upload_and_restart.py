"""Uploads (streamed, aborted) and a restart of the library in the middle of an import."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from limiquantix.common.errors import RemoteError
from limiquantix.common.images import CreateImageRequest
from limiquantix.image_library.client import ImageLibraryClient
from tests.support.disks import make_qcow2_with_data, sha256_file
from tests.support.images import Library, wait_image
from tests.support.origin import Origin


async def _chunks(path: Path, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while block := f.read(size):
            yield block
            await asyncio.sleep(0)


async def test_upload_streams_the_body_and_becomes_active(
    library: Library, client: ImageLibraryClient, disk: Path,
) -> None:
    record = await client.create_upload(CreateImageRequest(name="uploaded", os="custom"))
    assert record.state == "queued"
    async with library.session() as http, http.put(
        f"{library.url}/images/{record.id}/file", data=_chunks(disk),
        headers={"X-Checksum-Sha256": sha256_file(disk),
                 "Content-Length": str(disk.stat().st_size)},
    ) as response:
        body = await response.json()
        assert response.status == 200, body
    assert body["state"] == "active" and body["format"] == "qcow2"
    active = await client.get(record.id)
    assert active.sha256 == sha256_file(disk)
    assert sha256_file(library.store / "files" / record.id) == active.sha256


async def test_upload_with_a_wrong_checksum_is_refused_and_can_be_retried(
    library: Library, client: ImageLibraryClient, disk: Path,
) -> None:
    record = await client.create_upload(CreateImageRequest(name="retry-me"))
    async with library.session() as http:
        async with http.put(f"{library.url}/images/{record.id}/file", data=disk.read_bytes(),
                            headers={"X-Checksum-Sha256": "f" * 64}) as response:
            assert response.status == 422
            assert (await response.json(content_type=None))["code"] == "checksum_mismatch"
        assert (await client.get(record.id)).state == "error"
        assert library.leftovers(record.id) == []
        async with http.put(f"{library.url}/images/{record.id}/file",
                            data=disk.read_bytes()) as response:
            assert response.status == 200
    assert (await client.get(record.id)).state == "active"


async def test_upload_aborted_mid_stream_leaves_error_and_no_file(
    library: Library, client: ImageLibraryClient, disk: Path,
) -> None:
    record = await client.create_upload(CreateImageRequest(name="aborted"))
    data = disk.read_bytes()
    _, writer = await asyncio.open_connection("127.0.0.1", library.settings.image_library_port)
    token = library.auth(record.id, "PUT")["Authorization"]
    writer.write((f"PUT /images/{record.id}/file HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: {token}\r\n"
                  f"Content-Length: {len(data)}\r\n\r\n").encode())
    writer.write(data[: len(data) // 3])
    await writer.drain()
    await wait_image(client, record.id, "uploading")
    writer.close()  # the client goes away with two thirds missing
    failed = await wait_image(client, record.id, "error")
    assert "upload_incomplete" in failed.error
    assert library.leftovers(record.id) == []


async def test_upload_to_a_url_import_is_refused(
    library: Library, client: ImageLibraryClient, origin: Origin, disk: Path,
) -> None:
    record = await client.import_image(CreateImageRequest(source_url=origin.file_url("disk.qcow2")))
    await wait_image(client, record.id, "active")
    async with library.session() as http, http.put(
        f"{library.url}/images/{record.id}/file", data=b"x",
    ) as response:
        assert response.status == 409


async def test_restart_mid_import_resumes_with_range_and_yields_the_exact_file(
    library: Library, client: ImageLibraryClient, origin: Origin, disk: Path,
) -> None:
    size = disk.stat().st_size
    record = await client.import_image(CreateImageRequest(
        source_url=origin.file_url("disk.qcow2", rate=1 << 20), sha256=sha256_file(disk),
    ))
    partial = library.store / "partial" / f"{record.id}.part"
    while not partial.exists() or partial.stat().st_size < size // 3:
        await asyncio.sleep(0.05)
    await library.stop()  # SIGTERM-like: the download stops where it is
    kept = partial.stat().st_size
    assert 0 < kept < size
    await library.start()
    active = await wait_image(client, record.id, "active", "error", timeout_s=60)
    assert active.state == "active", active.error
    assert active.sha256 == sha256_file(disk)
    assert origin.ranges and origin.ranges[-1].startswith("bytes=") and int(
        origin.ranges[-1][6:].rstrip("-")) >= kept - (1 << 20)
    assert sha256_file(library.store / "files" / record.id) == sha256_file(disk)


async def test_restart_resume_restarts_cleanly_when_the_source_changed(
    library: Library, client: ImageLibraryClient, origin: Origin, disk: Path,
) -> None:
    """If-Range does not match a new file: the origin answers 200 and we start over."""
    record = await client.import_image(CreateImageRequest(
        source_url=origin.file_url("disk.qcow2", rate=1 << 20),
    ))
    partial = library.store / "partial" / f"{record.id}.part"
    while not partial.exists() or partial.stat().st_size < 1 << 20:
        await asyncio.sleep(0.05)
    await library.stop()
    make_qcow2_with_data(disk, mib=3)  # the source now serves another file
    await library.start()
    active = await wait_image(client, record.id, "active", "error", timeout_s=60)
    assert active.state == "active", active.error
    assert active.sha256 == sha256_file(disk)
    assert active.virtual_size == 3 << 20


async def test_delete_of_an_upload_in_progress_is_refused(
    library: Library, client: ImageLibraryClient, disk: Path,
) -> None:
    record = await client.create_upload(CreateImageRequest(name="busy"))
    _, writer = await asyncio.open_connection("127.0.0.1", library.settings.image_library_port)
    token = library.auth(record.id, "PUT")["Authorization"]
    writer.write((f"PUT /images/{record.id}/file HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: {token}\r\n"
                  f"Content-Length: 100000000\r\n\r\n").encode() + b"\0" * 65536)
    await writer.drain()
    await wait_image(client, record.id, "uploading")
    with pytest.raises(RemoteError) as caught:
        await client.delete(record.id)
    assert caught.value.reply.code == "image_busy"
    writer.close()
    await wait_image(client, record.id, "error")
