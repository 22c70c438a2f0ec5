"""The node-side cache against a real image library: single flight, reuse, verification, LRU."""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from limiquantix.common import nats_auth, nats_client
from limiquantix.common import settings as settings_mod
from limiquantix.common.images import CreateImageRequest
from limiquantix.common.library_tokens import SECRET_FILE
from limiquantix.common.nats_server import NatsServer
from limiquantix.image_library.client import ImageLibraryClient
from limiquantix.node_agent.images.cache import ImageCache, qcow2_backing_file
from limiquantix.node_agent.images.errors import (
    ImageChecksumMismatch,
    ImageDownloadFailed,
    ImageNotReady,
)
from limiquantix.node_agent.vm_files import qemu_gid
from tests.support.counting_proxy import CountingProxy, start_proxy
from tests.support.disks import make_qcow2_with_data, sha256_file
from tests.support.images import Library, LibraryProcess, wait_image
from tests.support.origin import Origin
from tests.support.waits import eventually


@pytest.fixture
async def proxy(library: Library) -> AsyncIterator[CountingProxy]:
    async for counting in start_proxy(library.url):
        yield counting


def make_cache(tmp_path: Path, nc: Client, proxy: CountingProxy, max_gib: float = 50.0,
               retry_s: float = 120.0) -> ImageCache:
    # The library fixture's data dir is tmp_path/library: its secret signs our requests.
    library_secret = tmp_path / "library" / SECRET_FILE
    settings = settings_mod.load({}, data_dir=str(tmp_path / "node"), node_id="node-t",
                                 image_library_url=proxy.url, image_cache_max_gib=max_gib,
                                 image_library_secret_file=str(library_secret),
                                 transient_retry_s=retry_s)
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
    assert "remote" in caught.value.message
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
    await asyncio.sleep(0.01)  # deliberate: a later use time, which LRU eviction orders by
    third = await cache.ensure(ids[2])  # over the limit now: second goes, first is in use
    assert first.path.exists() and third.path.exists()
    assert not second.path.exists()
    assert {c.image_id for c in cache.cached()} == {ids[0], ids[2]}


async def test_an_image_backing_a_frozen_snapshot_base_counts_as_in_use(
    tmp_path: Path, nc: Client, proxy: CountingProxy,
) -> None:
    """A linked clone's base (``<vm>/bases/<snapshot>.qcow2``) keeps the image it is over."""
    cache = make_cache(tmp_path, nc, proxy, max_gib=1.0)
    image = tmp_path / "image.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "1G"], check=True)
    bases = tmp_path / "node" / "images" / "vm-1" / "bases"
    bases.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                    str(image), str(bases / "snap.qcow2")], check=True)
    assert cache.backing_files_in_use() == {image.resolve()}


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


@pytest.fixture
async def library_process(tmp_path: Path, nats_server: NatsServer
                          ) -> AsyncIterator[LibraryProcess]:
    """lq-image-library as a process the test may SIGKILL (JetStream laid out as by a gateway)."""
    async with nats_client.connect(nats_server.url, name="test",
                                   creds=str(nats_server.creds_for(nats_auth.API))) as setup:
        await nats_client.ensure_jetstream(setup.jetstream(), heartbeat_interval_s=1.0)
    running = LibraryProcess(tmp_path / "library", nats_server)
    await running.start()
    yield running
    await running.stop()


async def _wait_partial(cache: ImageCache, at_least: int, timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sizes = [p.stat().st_size for p in cache.root.glob(".partial/*.part")]
        if sizes and max(sizes) >= at_least:
            return max(sizes)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no partial download of {at_least} bytes within {timeout_s} s")


async def test_a_library_killed_mid_download_and_restarted_costs_time_not_the_image(
    tmp_path: Path, nc: Client, client: ImageLibraryClient, origin: Origin,
    library_process: LibraryProcess,
) -> None:
    """Issue 11 row 7: the download resumes (Range) after the restart and verifies; a `get`
    made while the library is down waits for it too."""
    big = await imported(client, origin, "big.qcow2", mib=12)
    small = await imported(client, origin, "small.qcow2", mib=1)
    async for proxy in start_proxy(f"http://127.0.0.1:{library_process.port}", rate=2 << 20):
        cache = make_cache(tmp_path, nc, proxy, retry_s=60)
        download = asyncio.ensure_future(cache.ensure(big))
        cut_at = await _wait_partial(cache, 3 << 20)
        await library_process.kill()
        later = asyncio.ensure_future(cache.ensure(small))  # its catalog get finds no library
        await eventually(functools.partial(proxy.requested, f"/images/{big}/file", 2),
                         timeout_s=10.0,
                         what="a retry of the download while the library is down")
        assert not download.done() and not later.done()  # waiting, not failed
        await library_process.start()
        local = await asyncio.wait_for(download, 60)
        assert local.sha256 == sha256_file(origin.root / "big.qcow2") == sha256_file(local.path)
        assert (await asyncio.wait_for(later, 60)).sha256 == sha256_file(
            origin.root / "small.qcow2")
        resumed = [int(r[6:].rstrip("-")) for r in proxy.ranges]
        assert resumed and max(resumed) >= cut_at  # continued, not started over
        assert not list(cache.root.glob(".partial/*"))


async def test_a_download_the_library_refuses_for_good_fails_at_once(
    tmp_path: Path, nc: Client, client: ImageLibraryClient, origin: Origin, library: Library,
    proxy: CountingProxy,
) -> None:
    """A 4xx (here the library's 409: the file is gone from its store) is final: no retry for
    LQ_TRANSIENT_RETRY_S."""
    image_id = await imported(client, origin, "gone.qcow2")
    (library.store / "files" / image_id).unlink()
    cache = make_cache(tmp_path, nc, proxy, retry_s=60)
    started = time.monotonic()
    with pytest.raises(ImageDownloadFailed) as caught:
        await cache.ensure(image_id)
    assert caught.value.details["status"] == 409
    assert time.monotonic() - started < 5
    assert proxy.hits[f"/images/{image_id}/file"] == 1


async def test_partial_downloads_a_killed_agent_left_are_removed_at_start(
    tmp_path: Path, nc: Client, library: Library, proxy: CountingProxy,
) -> None:
    """Issue 11 row 11: nothing is in flight at start, so every partial file is an orphan."""
    cache = make_cache(tmp_path, nc, proxy)
    partial = cache.root / ".partial"
    partial.mkdir(parents=True)
    orphan = partial / f"{'a' * 64}.part"
    orphan.write_bytes(os.urandom(3 << 20))
    (partial / f"{'b' * 64}.json.tmp").write_bytes(b"{}")
    assert await make_cache(tmp_path, nc, proxy).remove_orphaned_partials() == (3 << 20) + 2
    assert list(partial.iterdir()) == []


async def test_eviction_counts_downloads_in_flight_and_removes_orphaned_ones(
    tmp_path: Path, nc: Client, client: ImageLibraryClient, origin: Origin, proxy: CountingProxy,
) -> None:
    ids = [await imported(client, origin, f"ev{i}.qcow2", mib=2) for i in range(2)]
    cache = make_cache(tmp_path, nc, proxy, max_gib=5.0 / 1024)  # room for two 2 MiB images
    first = await cache.ensure(ids[0])
    in_flight = cache.root / ".partial" / f"{'c' * 64}.part"
    in_flight.write_bytes(os.urandom(2 << 20))
    cache._flights["c" * 64] = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
    orphan = cache.root / ".partial" / f"{'d' * 64}.part"
    orphan.write_bytes(os.urandom(4 << 20))
    await asyncio.sleep(0.01)  # deliberate: a later use time, which LRU eviction orders by
    second = await cache.ensure(ids[1])  # 2 + 2 cached + 2 in flight > 5: the oldest goes
    assert not orphan.exists()  # a partial file nobody downloads is an orphan
    assert in_flight.exists() and second.path.exists()
    assert not first.path.exists()
    assert {c.image_id for c in cache.cached()} == {ids[1]}
    cache._flights.clear()
