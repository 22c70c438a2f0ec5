"""Row 6 of issue 10: the image library's HTTP needs a signed token; uploads bind to their
creator. Real in-process library on a real nats-server, plain HTTP clients."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from limiquantix.common.images import CreateImageRequest
from limiquantix.common.library_tokens import bearer, node_key, sign
from limiquantix.image_library.client import ImageLibraryClient
from tests.support.images import Library, wait_image
from tests.support.origin import Origin


@pytest.fixture
async def active_image(library: Library, client: ImageLibraryClient, origin: Origin,
                       disk: Path) -> str:
    record = await client.import_image(CreateImageRequest(source_url=origin.file_url(
        "disk.qcow2")))
    assert (await wait_image(client, record.id, "active", "error")).state == "active"
    return record.id


def _secret(library: Library) -> bytes:
    return (Path(library.settings.data_dir) / "image-library.key").read_bytes().strip()


async def test_an_unauthenticated_get_or_head_of_an_image_is_refused_401(
    library: Library, active_image: str,
) -> None:
    url = f"{library.url}/images/{active_image}/file"
    async with aiohttp.ClientSession() as http:
        for method in ("GET", "HEAD"):
            async with http.request(method, url) as response:
                assert response.status == 401
                assert response.content_type == "application/problem+json"
                if method == "GET":
                    assert (await response.json(content_type=None))["code"] == "unauthorized"
        async with http.get(url, headers=library.auth(active_image)) as response:
            assert response.status == 200


@pytest.mark.parametrize("case", ["other image", "other method", "expired", "wrong secret",
                                  "garbage"])
async def test_a_token_not_made_for_this_request_is_refused(
    library: Library, active_image: str, case: str,
) -> None:
    secret = _secret(library)
    token = {
        "other image": sign(secret, service="t", image_id="debian-12", method="GET"),
        "other method": sign(secret, service="t", image_id=active_image, method="PUT"),
        "expired": sign(secret, service="t", image_id=active_image, method="GET",
                        now=time.time() - 3600),
        "wrong secret": sign(b"x" * 32, service="t", image_id=active_image, method="GET"),
        "garbage": "lqi1.e30.AAAA",
    }[case]
    async with aiohttp.ClientSession() as http, http.get(
        f"{library.url}/images/{active_image}/file", headers=bearer(token),
    ) as response:
        assert response.status == 401


async def test_an_unauthenticated_put_is_refused_and_the_record_is_untouched(
    library: Library, client: ImageLibraryClient,
) -> None:
    record = await client.create_upload(CreateImageRequest(name="mine"), created_by="alice")
    async with aiohttp.ClientSession() as http, http.put(
        f"{library.url}/images/{record.id}/file", data=b"\0" * 4096,
    ) as response:
        assert response.status == 401
    assert (await client.get(record.id)).state == "queued"
    assert library.leftovers(record.id) == []


async def test_an_upload_takes_its_file_only_from_its_creator(
    library: Library, client: ImageLibraryClient, disk: Path,
) -> None:
    """The race from the audit: another caller's PUT cannot win into alice's record."""
    record = await client.create_upload(CreateImageRequest(name="alice-disk"),
                                        created_by="alice")
    assert record.created_by == "alice"
    url = f"{library.url}/images/{record.id}/file"
    async with aiohttp.ClientSession() as http:
        async with http.put(url, data=b"\0" * 4096,
                            headers=library.auth(record.id, "PUT", subject="mallory")) as response:
            assert response.status == 403
            assert (await response.json(content_type=None))["code"] == "forbidden"
        assert (await client.get(record.id)).state == "queued"
        async with http.put(url, data=disk.read_bytes(),
                            headers=library.auth(record.id, "PUT", subject="alice")) as response:
            assert response.status == 200, await response.text()
    assert (await client.get(record.id)).state == "active"


async def test_a_node_key_reads_images_but_cannot_upload_or_pass_for_the_gateway(
    library: Library, client: ImageLibraryClient, active_image: str,
) -> None:
    """Hypervisors hold only the node key: it reads, it cannot write or sign as the gateway."""
    key = node_key(_secret(library))
    assert key != _secret(library) and node_key(key) == key
    upload = await client.create_upload(CreateImageRequest(name="theirs"), created_by="")
    async with aiohttp.ClientSession() as http:
        read = sign(key, service="node:node-a", image_id=active_image, method="GET")
        async with http.get(f"{library.url}/images/{active_image}/file",
                            headers=bearer(read)) as response:
            assert response.status == 200
        for service in ("node:node-a", "gateway"):
            put = sign(key, service=service, image_id=upload.id, method="PUT")
            async with http.put(f"{library.url}/images/{upload.id}/file", data=b"\0" * 4096,
                                headers=bearer(put)) as response:
                assert response.status == 401, service
        forged = sign(key, service="gateway", image_id=active_image, method="GET")
        async with http.get(f"{library.url}/images/{active_image}/file",
                            headers=bearer(forged)) as response:
            assert response.status == 401
    assert (await client.get(upload.id)).state == "queued"
