"""Imports from a local origin: checksums, failures, redirects, cancel, catalog entries."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from limiquantix.common import subjects
from limiquantix.common.errors import RemoteError
from limiquantix.common.events import Event, ImageProgress, ImageStateChanged, event_decoder
from limiquantix.common.images import CreateImageRequest, ListImages
from limiquantix.image_library.client import ImageLibraryClient
from tests.support.disks import sha256_file
from tests.support.images import Library, wait_image
from tests.support.origin import Origin


async def test_import_with_matching_checksum_becomes_active_qcow2(
    library: Library, client: ImageLibraryClient, origin: Origin, disk: Path,
) -> None:
    expected = sha256_file(disk)
    record = await client.import_image(CreateImageRequest(
        source_url=origin.file_url("disk.qcow2"), sha256=expected, os="debian",
    ))
    assert record.state == "queued"
    assert record.name == "disk.qcow2"
    active = await wait_image(client, record.id, "active", "error")
    assert active.state == "active", active.error
    assert active.sha256 == expected
    assert active.format == "qcow2"
    assert active.virtual_size == 4 << 20
    assert active.file_size == disk.stat().st_size == active.bytes_done
    stored = library.store / "files" / record.id
    assert sha256_file(stored) == expected
    assert stored.stat().st_mode & 0o777 == 0o600  # only the library reads its store
    assert not list((library.store / "partial").iterdir())


async def test_checksum_mismatch_ends_in_error_and_leaves_no_file(
    library: Library, client: ImageLibraryClient, origin: Origin, disk: Path,
) -> None:
    record = await client.import_image(CreateImageRequest(
        source_url=origin.file_url("disk.qcow2"), sha256="0" * 64,
    ))
    failed = await wait_image(client, record.id, "active", "error")
    assert failed.state == "error"
    assert "checksum_mismatch" in failed.error and sha256_file(disk) in failed.error
    assert library.leftovers(record.id) == []


async def test_truncated_transfer_ends_in_error_and_leaves_no_file(
    library: Library, client: ImageLibraryClient, origin: Origin, disk: Path,
) -> None:
    record = await client.import_image(CreateImageRequest(
        source_url=origin.file_url("disk.qcow2", truncate=1 << 20),
    ))
    failed = await wait_image(client, record.id, "active", "error")
    assert failed.state == "error"
    assert "truncated" in failed.error
    assert library.leftovers(record.id) == []


@pytest.mark.parametrize("status", [404, 500])
async def test_source_error_status_is_reported_in_the_record(
    library: Library, client: ImageLibraryClient, origin: Origin, status: int,
) -> None:
    record = await client.import_image(CreateImageRequest(
        source_url=f"{origin.url}/status/{status}", name="broken",
    ))
    failed = await wait_image(client, record.id, "active", "error")
    assert failed.state == "error"
    assert f"HTTP {status}" in failed.error
    assert library.leftovers(record.id) == []


async def test_redirects_are_followed(
    library: Library, client: ImageLibraryClient, origin: Origin, disk: Path,
) -> None:
    record = await client.import_image(CreateImageRequest(
        source_url=f"{origin.url}/redirect/3/disk.qcow2", name="redirected",
    ))
    active = await wait_image(client, record.id, "active", "error")
    assert active.state == "active", active.error
    assert active.sha256 == sha256_file(disk)


async def test_too_many_redirects_are_refused(
    library: Library, client: ImageLibraryClient, origin: Origin, disk: Path,
) -> None:
    record = await client.import_image(CreateImageRequest(
        source_url=f"{origin.url}/redirect/9/disk.qcow2", name="loop",
    ))
    failed = await wait_image(client, record.id, "active", "error")
    assert "redirects" in failed.error


async def test_disallowed_scheme_is_refused_at_once(
    library: Library, client: ImageLibraryClient,
) -> None:
    with pytest.raises(RemoteError) as caught:
        await client.import_image(CreateImageRequest(source_url="file:///etc/passwd"))
    assert caught.value.reply.code == "scheme_not_allowed"
    assert caught.value.reply.status == 422


async def test_deleting_a_slow_download_cancels_it_and_removes_everything(
    library: Library, client: ImageLibraryClient, origin: Origin, disk: Path,
) -> None:
    record = await client.import_image(CreateImageRequest(
        source_url=origin.file_url("disk.qcow2", rate=512 * 1024), name="slow",
    ))
    progressing = await wait_image(client, record.id, "downloading")
    deadline = time.monotonic() + 10  # progress is written once a second
    while progressing.bytes_done == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        progressing = await client.get(record.id)
    assert 0 < progressing.bytes_done < disk.stat().st_size
    assert progressing.bytes_total == disk.stat().st_size
    deleted = await client.delete(record.id)
    assert deleted.state == "deleted"
    with pytest.raises(RemoteError) as caught:
        await client.get(record.id)
    assert caught.value.reply.code == "image_not_found"
    assert library.leftovers(record.id) == []


async def test_catalog_lists_shipped_images_as_remote(
    library: Library, client: ImageLibraryClient,
) -> None:
    listed = await client.list(ListImages(state="remote"))
    by_id = {r.id: r for r in listed.images}
    assert {"ubuntu-22-04", "ubuntu-24-04", "debian-12", "rocky-9", "almalinux-9"} <= set(by_id)
    assert by_id["debian-12"].default_user == "debian"
    assert by_id["rocky-9"].default_user == "rocky"
    assert by_id["ubuntu-24-04"].source_url.startswith("https://cloud-images.ubuntu.com/noble/")


async def test_catalog_entry_imports_in_one_call_and_delete_makes_it_remote_again(
    library: Library, client: ImageLibraryClient, origin: Origin, disk: Path,
) -> None:
    """No internet here: the entry is imported from a local mirror URL instead of its own."""
    record = await client.import_image(CreateImageRequest(
        catalog_id="debian-12", source_url=origin.file_url("disk.qcow2"),
    ))
    assert record.id == "debian-12" and record.state == "queued"
    active = await wait_image(client, "debian-12", "active", "error")
    assert active.state == "active", active.error
    assert active.default_user == "debian"
    assert active.sha256 == sha256_file(disk)
    with pytest.raises(RemoteError) as caught:  # already imported
        await client.import_image(CreateImageRequest(catalog_id="debian-12"))
    assert caught.value.reply.code == "image_busy"
    deleted = await client.delete("debian-12")
    assert deleted.state == "remote"
    again = await client.get("debian-12")
    assert again.state == "remote" and again.sha256 == ""
    assert again.source_url.startswith("https://cloud.debian.org/")
    assert library.leftovers("debian-12") == []


async def test_filters_select_by_state_format_and_os(
    library: Library, client: ImageLibraryClient, origin: Origin, disk: Path,
) -> None:
    record = await client.import_image(CreateImageRequest(
        source_url=origin.file_url("disk.qcow2"), os="testos",
    ))
    await wait_image(client, record.id, "active")
    by_os = await client.list(ListImages(os="testos"))
    assert [r.id for r in by_os.images] == [record.id]
    active_qcow2 = await client.list(ListImages(state="active", format="qcow2"))
    assert [r.id for r in active_qcow2.images] == [record.id]
    assert (await client.list(ListImages(state="active", format="iso"))).images == ()


async def test_an_import_publishes_its_state_changes_and_progress_as_events(
    library: Library, client: ImageLibraryClient, origin: Origin, disk: Path, nc: Client,
) -> None:
    received: list[Event] = []

    async def collect(msg: Msg) -> None:
        received.append(event_decoder.decode(msg.data))

    subscription = await nc.subscribe(subjects.image_events(), cb=collect)
    record = await client.import_image(CreateImageRequest(
        source_url=origin.file_url("disk.qcow2", rate=2 << 20), name="evented",
    ))
    await wait_image(client, record.id, "active")
    deadline = time.monotonic() + 10  # the record is written before its event is published
    while time.monotonic() < deadline and not any(
            isinstance(e, ImageStateChanged) and e.image_id == record.id and e.state == "active"
            for e in received):
        await asyncio.sleep(0.02)
    await subscription.unsubscribe()
    mine = [e for e in received if getattr(e, "image_id", "") == record.id]
    states = [e.state for e in mine if isinstance(e, ImageStateChanged)]
    assert states == ["queued", "downloading", "verifying", "active"]
    progress = [e for e in mine if isinstance(e, ImageProgress)]
    assert len(progress) >= 2  # the start, at least one while running, the end
    assert progress[-1].bytes_done == progress[-1].bytes_total == disk.stat().st_size
    assert all(a.bytes_done <= b.bytes_done for a, b in itertools.pairwise(progress))
