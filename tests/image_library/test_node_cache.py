"""The node-side cache against a real image library: single flight, reuse, verification, LRU."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from limiquantix.common import settings as settings_mod
from limiquantix.common.images import CreateImageRequest
from limiquantix.common.library_tokens import SECRET_FILE
from limiquantix.image_library.client import ImageLibraryClient
from limiquantix.node_agent.image_cache import ImageCache, qcow2_backing_file
from limiquantix.node_agent.image_cache_errors import ImageChecksumMismatch, ImageNotReady
from limiquantix.node_agent.vm_files import qemu_gid
from tests.image_library.conftest import Library, make_qcow2_with_data, sha256_file, wait_image
from tests.image_library.counting_proxy import CountingProxy, start_proxy
from tests.image_library.origin import Origin


@pytest.fixture
async def proxy(library: Library) -> AsyncIterator[CountingProxy]:
    async for counting in start_proxy(library.url):
        yield counting


def make_cache(tmp_path: Path, nc: Client, proxy: CountingProxy, max_gib: float = 50.0
               ) -> ImageCache:
    # The library fixture's data dir is tmp_path/library: its secret signs our requests.
    library_secret = tmp_path / "library" / SECRET_FILE
    settings = settings_mod.load({}, data_dir=str(tmp_path / "node"), node_id="node-t",
                                 image_library_url=proxy.url, image_cache_max_gib=max_gib,
                                 image_library_secret_file=str(library_secret))
    return ImageCache(settings, nc, nc.jetstream())


async def imported(client: ImageLibraryClient, origin: Origin, name: str, mib: int = 4) -> str:
    make_qcow2_with_data(origin.root / name, mib=mib)
    record = await client.import_image(CreateImageRequest(source_url=origin.file_url(name)))
    active = await wait_image(client, record.id, "active", "error")
    assert active.state == "active", active.error
    return record.id


async def test_ten_concurrent_ensures_download_once_and_share_the_file(
    tmp_path: Path, nc: Client, client: ImageLibraryClient, origin: Origin, proxy: CountingProxy,
) -> None:
    image_id = await imported(client, origin, "shared.qcow2")
    cache = make_cache(tmp_path, nc, proxy)
    seen: list[tuple[int, int | None]] = []

    async def progress(done: int, total: int | None) -> None:
        seen.append((done, total))

    results = await asyncio.gather(*(cache.ensure(image_id, on_progress=progress)
                                     for _ in range(10)))
    assert proxy.hits[f"/images/{image_id}/file"] == 1
    assert len({r.path for r in results}) == 1
    local = results[0]
    assert local.format == "qcow2" and local.virtual_size == 4 << 20
    assert local.sha256 == sha256_file(origin.root / "shared.qcow2") == sha256_file(local.path)
    assert local.path.parent == tmp_path / "node" / "cloud-images"
    assert local.path.name == f"{local.sha256}.qcow2"
    # A backing file of VMs: QEMU's group may read it, other users may not.
    shared = qemu_gid() is not None
    assert local.path.stat().st_mode & 0o777 == (0o640 if shared else 0o600)
    assert local.path.parent.stat().st_mode & 0o777 == (0o750 if shared else 0o700)
    size = local.path.stat().st_size
    assert (size, size) in seen
    assert not list((local.path.parent / ".partial").iterdir())


async def test_an_image_already_cached_is_never_downloaded_again(
    tmp_path: Path, nc: Client, client: ImageLibraryClient, origin: Origin, proxy: CountingProxy,
) -> None:
    image_id = await imported(client, origin, "again.qcow2")
    first = await make_cache(tmp_path, nc, proxy).ensure(image_id)
    again = await make_cache(tmp_path, nc, proxy).ensure(image_id)  # a restarted node agent
    assert again == first
    assert proxy.hits[f"/images/{image_id}/file"] == 1


async def test_a_corrupted_transfer_is_detected_and_discarded(
    tmp_path: Path, nc: Client, client: ImageLibraryClient, origin: Origin, proxy: CountingProxy,
    library: Library,
) -> None:
    image_id = await imported(client, origin, "damaged.qcow2")
    stored = library.store / "files" / image_id
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF  # same size, one bit flipped behind the library's back
    stored.write_bytes(bytes(data))
    cache = make_cache(tmp_path, nc, proxy)
    with pytest.raises(ImageChecksumMismatch):
        await cache.ensure(image_id)
    assert cache.cached() == []
    assert [p for p in cache.root.rglob("*") if p.is_file()] == []


async def test_an_image_not_yet_imported_is_refused_with_a_hint(
    tmp_path: Path, nc: Client, library: Library, proxy: CountingProxy,
) -> None:
    with pytest.raises(ImageNotReady) as caught:
        await make_cache(tmp_path, nc, proxy).ensure("debian-12")
    assert "available" in caught.value.message
    assert "catalog_id" in caught.value.hint


async def test_over_the_limit_the_least_recently_used_unused_image_is_evicted(
    tmp_path: Path, nc: Client, client: ImageLibraryClient, origin: Origin, proxy: CountingProxy,
) -> None:
    ids = [await imported(client, origin, f"img{i}.qcow2", mib=2) for i in range(3)]
    cache = make_cache(tmp_path, nc, proxy, max_gib=5.0 / 1024)  # room for two 2 MiB images
    first = await cache.ensure(ids[0])
    vm_dir = tmp_path / "node" / "images" / "vm-1"
    vm_dir.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                    str(first.path), str(vm_dir / "disk.qcow2"), "1G"], check=True)
    assert qcow2_backing_file(vm_dir / "disk.qcow2") == first.path
    second = await cache.ensure(ids[1])
    await asyncio.sleep(0.01)
    third = await cache.ensure(ids[2])  # over the limit now: second goes, first is in use
    assert first.path.exists() and third.path.exists()
    assert not second.path.exists()
    assert {c.image_id for c in cache.cached()} == {ids[0], ids[2]}


async def test_after_a_reboot_a_cached_image_is_reverified_once_and_a_damaged_one_refetched(
    tmp_path: Path, nc: Client, client: ImageLibraryClient, origin: Origin, proxy: CountingProxy,
) -> None:
    """Files are not fsynced; the sidecar's boot id says when a re-check is due."""
    image_id = await imported(client, origin, "boot.qcow2")
    cache = make_cache(tmp_path, nc, proxy)
    local = await cache.ensure(image_id)
    sidecar = local.path.with_suffix(".json")
    sidecar.write_text(sidecar.read_text().replace(cache._boot_id, "an-earlier-boot"))
    assert await make_cache(tmp_path, nc, proxy).ensure(image_id) == local  # intact: kept
    assert cache._boot_id in sidecar.read_text()
    assert proxy.hits[f"/images/{image_id}/file"] == 1
    sidecar.write_text(sidecar.read_text().replace(cache._boot_id, "an-earlier-boot"))
    with open(local.path, "r+b") as f:  # pages lost in a power cut: zeroes
        f.seek(-4096, 2)
        f.write(b"\0" * 4096)
    again = await make_cache(tmp_path, nc, proxy).ensure(image_id)
    assert proxy.hits[f"/images/{image_id}/file"] == 2
    assert sha256_file(again.path) == again.sha256 == local.sha256
