"""``/v1/images`` through the real gateway and the real image library (subprocesses, Stack)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import nats
import pytest

from limiquantix.common import nats_client, subjects
from limiquantix.common.model import utcnow
from limiquantix.common.vm_store import VmStore
from limiquantix.common.vms import VmRecord
from limiquantix.local.stack import Stack
from tests.support.disks import make_qcow2_with_data, sha256_file
from tests.support.flows import wait_image_state
from tests.support.origin import ALLOW_LOCAL_ORIGINS, Origin

pytestmark = pytest.mark.stack


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Stack, aiohttp.ClientSession]]:
    stack = Stack(tmp_path / "stack", nodes=(), extra_env={"LQ_LOG_LEVEL": "debug",
                                                               **ALLOW_LOCAL_ORIGINS})
    async with stack, aiohttp.ClientSession(base_url=stack.api_url,
                                            headers=stack.headers()) as api:
        yield stack, api


async def test_import_list_download_and_delete_through_the_gateway(
    gateway: tuple[Stack, aiohttp.ClientSession], origin: Origin, disk: Path,
) -> None:
    _, api = gateway
    async with api.post("/v1/images", json={
        "source_url": origin.file_url("disk.qcow2"), "name": "gw-disk", "os": "debian",
        "sha256": sha256_file(disk),
    }) as response:
        created = await response.json()
        assert response.status == 202, created
        assert response.headers["Location"] == f"/v1/images/{created['id']}"
    image_id = created["id"]
    active = await wait_image_state(api, image_id, "active", "error")
    assert active["state"] == "active", active
    async with api.get("/v1/images", params={"state": "active", "os": "debian"}) as response:
        listed = await response.json()
    assert [i["id"] for i in listed["images"]] == [image_id]
    async with api.get("/v1/images", params={"state": "remote"}) as response:
        assert len((await response.json())["images"]) == 5
    data = disk.read_bytes()
    async with api.get(f"/v1/images/{image_id}/file") as response:
        assert response.status == 200
        assert response.headers["X-Checksum-Sha256"] == hashlib.sha256(data).hexdigest()
        assert await response.read() == data
    async with api.head(f"/v1/images/{image_id}/file") as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(data))
        assert await response.read() == b""
    async with api.get(f"/v1/images/{image_id}/file",
                       headers={"Range": "bytes=100-199"}) as response:
        assert response.status == 206
        assert await response.read() == data[100:200]
    async with api.get(f"/v1/images/{image_id}/file",
                       headers={"Range": f"bytes={len(data) + 10}-"}) as response:
        assert response.status == 416
    async with api.delete(f"/v1/images/{image_id}") as response:
        assert response.status == 200
    async with api.get(f"/v1/images/{image_id}") as response:
        assert response.status == 404
        assert (await response.json(content_type=None))["code"] == "image_not_found"


async def test_upload_through_the_gateway_streams_to_the_library(
    gateway: tuple[Stack, aiohttp.ClientSession], tmp_path: Path,
) -> None:
    _, api = gateway
    disk = make_qcow2_with_data(tmp_path / "up.qcow2", mib=8)
    async with api.post("/v1/images", json={"name": "my upload"}) as response:
        created = await response.json()
        assert response.status == 201, created
        assert created["state"] == "queued"

    async def body() -> AsyncIterator[bytes]:
        with open(disk, "rb") as f:
            while block := f.read(1 << 20):
                yield block

    async with api.put(f"/v1/images/{created['id']}/file", data=body(), headers={
        "X-Checksum-Sha256": sha256_file(disk), "Content-Length": str(disk.stat().st_size),
    }) as response:
        active = await response.json()
        assert response.status == 200, active
    assert active["state"] == "active" and active["format"] == "qcow2"
    assert active["virtual_size"] == 8 << 20


async def test_catalog_import_by_id_and_in_use_refusal(
    gateway: tuple[Stack, aiohttp.ClientSession], origin: Origin, disk: Path,
) -> None:
    stack, api = gateway
    async with api.post("/v1/images", json={"catalog_id": "rocky-9",
                                            "source_url": origin.file_url("disk.qcow2")}
                        ) as response:
        assert response.status == 202
    await wait_image_state(api, "rocky-9", "active")
    nc = await nats.connect(**stack.nats_options())  # as the gateway
    try:
        js = nc.jetstream()
        store = VmStore(await nats_client.bucket(js, subjects.VMS_BUCKET),
                        await nats_client.bucket(js, subjects.VM_NAMES_BUCKET))
        now = utcnow()
        vm = VmRecord(id=str(uuid.uuid4()), name="uses-rocky", image="rocky-9", vcpus=1,
                      memory_mib=256, disk_gib=1, created_at=now, updated_at=now)
        await store.create(vm)
        async with api.delete("/v1/images/rocky-9") as response:
            problem = await response.json(content_type=None)
            assert response.status == 409
            assert problem["code"] == "image_in_use" and problem["vms"] == [vm.id]
        await store.delete(vm)
    finally:
        await nc.drain()
    async with api.delete("/v1/images/rocky-9") as response:
        assert response.status == 200
        assert (await response.json())["state"] == "remote"


async def test_bad_bodies_are_refused_with_422(
    gateway: tuple[Stack, aiohttp.ClientSession],
) -> None:
    _, api = gateway
    for body in ({"source_url": "ftp://x/y"}, {"name": "x", "colour": "blue"},
                 {"source_url": "http://x/y", "sha256": "nothex"}):
        async with api.post("/v1/images", json=body) as response:
            assert response.status == 422, body


async def test_upload_aborted_at_the_gateway_fails_the_record_and_leaves_no_file(
    gateway: tuple[Stack, aiohttp.ClientSession], tmp_path: Path,
) -> None:
    stack, api = gateway
    disk = make_qcow2_with_data(tmp_path / "abort.qcow2", mib=8)
    data = disk.read_bytes()
    async with api.post("/v1/images", json={"name": "aborted"}) as response:
        image_id = (await response.json())["id"]
    _, writer = await asyncio.open_connection("127.0.0.1", stack.api_port)
    writer.write((f"PUT /v1/images/{image_id}/file HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {stack.api_token}\r\n"
                  f"Content-Length: {len(data)}\r\n\r\n").encode() + data[: len(data) // 3])
    await writer.drain()
    await wait_image_state(api, image_id, "uploading")
    writer.close()
    failed = await wait_image_state(api, image_id, "error")
    assert "upload_incomplete" in failed["error"]
    store = stack.root / "image-library" / "image-library"
    assert (store / "files").is_dir()
    assert [p for p in store.rglob("*") if p.name.startswith(image_id)] == []
