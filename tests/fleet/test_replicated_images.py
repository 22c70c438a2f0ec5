"""An image store that survives a host: two image library processes (``LQ_IMAGE_STORE=
jetstream``) on a three-server NATS cluster serve one catalog from a replicated Object Store;
killing the one a node is downloading from lets the node finish from the other (``Range``
resume, the node's own fetch code) with the whole file's SHA-256 verified."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import nats
import pytest

from limiquantix.common import nats_auth, nats_client, subjects
from limiquantix.common.images import CreateImageRequest
from limiquantix.common.library_tokens import bearer, load_or_create_secret_file, sign
from limiquantix.common.nats_server import NatsCluster
from limiquantix.image_library.client import ImageLibraryClient
from limiquantix.node_agent.images.fetch import FetchError, FetchProgress, fetch
from tests.support.counting_proxy import start_proxy
from tests.support.disks import make_qcow2_with_data, sha256_file
from tests.support.images import LibraryProcess, wait_image
from tests.support.load_balancer import LoadBalancer
from tests.support.origin import Origin

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

RATE = 4 << 20  # bytes/s through the node's side: the download lasts ~6 s


async def start_libraries(cluster: NatsCluster, root: Path, secret: Path
                          ) -> list[LibraryProcess]:
    libraries = []
    for name in ("library-a", "library-b"):
        library = LibraryProcess(root / name, cluster)  # type: ignore[arg-type]
        library.env.update(LQ_IMAGE_STORE="jetstream", LQ_NATS_URL=cluster.url,
                           LQ_IMAGE_LIBRARY_SECRET_FILE=str(secret))
        await library.start()
        libraries.append(library)
    return libraries


async def test_a_node_download_cut_by_a_dead_library_finishes_from_the_other(
        tmp_path: Path, nats_cluster: NatsCluster, origin: Origin) -> None:
    nc = await nats.connect(**nats_cluster.connect_options(nats_auth.API))
    libraries: list[LibraryProcess] = []
    try:
        js = nc.jetstream(timeout=10)
        await nats_client.ensure_jetstream(js, heartbeat_interval_s=1.0, replicas=3)
        files = await js.stream_info(nats_client.object_stream(subjects.IMAGE_FILES_BUCKET))
        assert files.config.num_replicas == 3
        secret_file = tmp_path / "library.key"
        secret = load_or_create_secret_file(secret_file)
        libraries = await start_libraries(nats_cluster, tmp_path, secret_file)

        disk = make_qcow2_with_data(origin.root / "disk.qcow2", mib=24)
        client = ImageLibraryClient(nc, timeout_s=10)
        record = await client.import_image(CreateImageRequest(
            source_url=origin.file_url("disk.qcow2"), sha256=sha256_file(disk)))
        active = await wait_image(client, record.id, "active", "error", timeout_s=60)
        assert active.state == "active", active.error
        # In the replicated store, and in the local cache of the instance that imported it.
        info = await (await js.object_store(subjects.IMAGE_FILES_BUCKET)).get_info(record.id)
        assert info.size == disk.stat().st_size
        importer = next(lib for lib in libraries if (
            lib.log.parent / "image-library" / "files" / record.id).exists())
        other = next(lib for lib in libraries if lib is not importer)

        # The node reaches the libraries through one address (a Service): importer first.
        backends = [("127.0.0.1", importer.port), ("127.0.0.1", other.port)]
        async with LoadBalancer(backends) as balancer, \
                contextlib.asynccontextmanager(start_proxy)(balancer.url, RATE) as proxy:
            url = f"{proxy.url}/images/{record.id}/file"
            headers = bearer(sign(secret, service="node", image_id=record.id, method="GET"))
            dest = tmp_path / "node-cache" / f"{record.id}.part"
            dest.parent.mkdir()
            progress, cancel = FetchProgress(), threading.Event()
            first = asyncio.create_task(asyncio.to_thread(
                fetch, url, dest, progress=progress, cancel=cancel, headers=headers))
            while progress.done < info.size // 4:
                assert not first.done(), "the download ended before the kill"
                await asyncio.sleep(0.02)
            await importer.kill()
            with pytest.raises(FetchError) as cut:
                await first
            assert cut.value.transient  # what the node's retry policy retries
            had = dest.stat().st_size
            assert 0 < had < info.size
            # The node's retry: the same URL, Range from what it has; the other instance
            # copies the file out of the replicated store and serves the rest.
            done = await asyncio.to_thread(fetch, url, dest, progress=FetchProgress(),
                                           cancel=cancel, headers=headers, resume=True)
        assert done.sha256 == active.sha256 == sha256_file(disk)
        assert sha256_file(dest) == active.sha256 and done.size == info.size
        assert f"bytes={had}-" in proxy.ranges
        assert (other.log.parent / "image-library" / "files" / record.id).exists()
        print(f"\nkilled at {had} of {info.size} bytes; resumed from the other instance")
    finally:
        for library in libraries:
            await library.stop()
        await nc.close()
