"""Row 15 of issue 10: named API tokens with roles; row 12: the image id in the proxy path.

The gateway app on aiohttp's test server, a real nats-server; the image library (in-process
serve()) on the same NATS where a request must reach it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nats
import pytest
from aiohttp.test_utils import TestClient
from nats.aio.client import Client

from limiquantix.common import nats_auth, subjects
from limiquantix.common.nats_server import NatsServer
from limiquantix.image_library.client import ImageLibraryClient
from tests.support.images import Library, wait_image
from tests.support.security import MASTER, MakeGateway

Api = TestClient  # type: ignore[type-arg]


@pytest.fixture
async def gw(make_gateway: MakeGateway, nc: Client) -> Api:
    return await make_gateway()


async def _create(gw: Api, name: str, role: str, auth: dict[str, str] | None = None
                  ) -> dict[str, Any]:
    async with gw.post("/v1/tokens", json={"name": name, "role": role},
                       headers=auth or MASTER) as response:
        body = await response.json()
        assert response.status == 201, body
        return body  # type: ignore[no-any-return]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_master_token_creates_lists_and_deletes_named_tokens(
    gw: Api, nc: Client,
) -> None:
    created = await _create(gw, "ci-bot", "operator")
    assert set(created) >= {"id", "name", "role", "token"}
    assert created["token"].startswith("lqt_") and created["role"] == "operator"
    async with gw.get("/v1/tokens", headers=MASTER) as response:
        listed = (await response.json())["tokens"]
    assert [(t["id"], t["name"], t["role"]) for t in listed] == [
        (created["id"], "ci-bot", "operator")]
    assert "token" not in listed[0] and created["token"] not in str(listed)
    raw = await (await nc.jetstream().key_value(subjects.TOKENS_BUCKET)).get(created["id"])
    assert created["token"].encode() not in (raw.value or b"")  # only its hash is stored
    async with gw.post("/v1/tokens", json={"name": "ci-bot", "role": "viewer"},
                              headers=MASTER) as response:
        assert response.status == 409
        assert (await response.json())["code"] == "token_name_taken"


async def test_a_viewer_reads_but_cannot_create_delete_or_manage_tokens(gw: Api) -> None:
    viewer = _bearer((await _create(gw, "auditor", "viewer"))["token"])
    async with gw.get("/v1/vms", headers=viewer) as response:
        assert response.status == 200
    for method, path, body in (
        ("POST", "/v1/vms", {"name": "x", "image": "debian-12"}),
        ("DELETE", "/v1/vms/web-1", None),
        ("POST", "/v1/images", {"name": "up"}),
        ("POST", "/v1/tokens", {"name": "escalate", "role": "admin"}),
        ("GET", "/v1/tokens", None),
    ):
        async with gw.request(method, path, json=body, headers=viewer) as response:
            problem = await response.json()
            assert response.status == 403, (method, path, problem)
            assert problem["code"] == "forbidden"
            assert "viewer" in problem["detail"] and problem["hint"]


async def test_an_operator_manages_vms_but_not_tokens(gw: Api) -> None:
    operator = _bearer((await _create(gw, "deployer", "operator"))["token"])
    async with gw.post("/v1/vms", json={"name": "Not A Name"},
                              headers=operator) as response:
        assert response.status == 422  # past authorisation, refused by validation
    for method, path in (("GET", "/v1/tokens"), ("POST", "/v1/tokens")):
        async with gw.request(method, path, json={"name": "x", "role": "admin"},
                                     headers=operator) as response:
            assert response.status == 403


async def test_a_named_admin_token_manages_tokens_and_is_named_as_their_creator(
    gw: Api,
) -> None:
    admin = _bearer((await _create(gw, "root-2", "admin"))["token"])
    await _create(gw, "made-by-root-2", "viewer", auth=admin)
    async with gw.get("/v1/tokens", headers=admin) as response:
        by_name = {t["name"]: t for t in (await response.json())["tokens"]}
    assert by_name["made-by-root-2"]["created_by"] == "root-2"
    assert by_name["root-2"]["created_by"] == "master"


async def test_a_deleted_token_is_refused_at_once(gw: Api) -> None:
    created = await _create(gw, "temp", "viewer")
    token = _bearer(created["token"])
    async with gw.get("/v1/vms", headers=token) as response:
        assert response.status == 200
    async with gw.delete(f"/v1/tokens/{created['id']}", headers=MASTER) as response:
        assert response.status == 204
    async with gw.get("/v1/vms", headers=token) as response:
        assert response.status == 401
        assert (await response.json())["code"] == "unauthorized"
    async with gw.delete(f"/v1/tokens/{created['id']}", headers=MASTER) as response:
        assert response.status == 404


@pytest.mark.parametrize("token", ["lqt_", "lqt_abc", "lqt_00000000000000000000000000000000_x",
                                   "lqt_../../x_y", "nope"])
async def test_made_up_tokens_are_refused(gw: Api, token: str) -> None:
    async with gw.get("/v1/vms", headers=_bearer(token)) as response:
        assert response.status == 401


async def test_an_encoded_path_in_the_image_id_never_reaches_the_library(
    make_gateway: MakeGateway, library: Library,
) -> None:
    gw = await make_gateway(image_library_url=library.url)
    async with gw.get("/v1/images/..%2F..%2Fhealthz%3Fx=/file",
                             headers=MASTER) as response:
        assert response.status in (404, 422)
        assert response.content_type == "application/problem+json"
        assert await response.text() != "ok"


async def test_an_upload_record_takes_a_file_only_from_the_token_that_created_it(
    make_gateway: MakeGateway, library: Library, client: ImageLibraryClient, disk: Path,
) -> None:
    """Through the gateway: operator alice's upload record refuses operator bob's PUT."""
    gw = await make_gateway(image_library_url=library.url,
                            image_library_secret_file=str(Path(library.settings.data_dir)
                                                          / "image-library.key"))
    alice = _bearer((await _create(gw, "alice", "operator"))["token"])
    bob = _bearer((await _create(gw, "bob", "operator"))["token"])
    async with gw.post("/v1/images", json={"name": "alice-disk"},
                              headers=alice) as response:
        record = await response.json()
        assert response.status == 201, record
    url = f"/v1/images/{record['id']}/file"
    async with gw.put(url, data=b"\0" * 4096, headers=bob) as response:
        assert response.status == 403
    assert (await client.get(record["id"])).state == "queued"
    async with gw.put(url, data=disk.read_bytes(), headers=alice) as response:
        assert response.status == 200, await response.text()
    assert (await wait_image(client, record["id"], "active")).state == "active"
    async with gw.get(url, headers=bob) as response:  # reading is any operator's
        assert response.status == 200
        assert await response.read() == disk.read_bytes()


async def test_only_the_gateway_identity_reads_the_token_bucket(
    gw: Api, nats_server: NatsServer,
) -> None:
    """Token hashes are the gateway's: a node's or the library's NATS identity cannot read them."""
    if not nats_server.auth:
        pytest.skip("this nats-server runs without authentication")
    created = await _create(gw, "ci-reader", "viewer")
    await nats_server.add_node("node-x")
    for identity in (nats_auth.node_identity("node-x"), nats_auth.IMAGE_LIBRARY):
        nc = await nats.connect(**nats_server.connect_options(identity))
        try:
            assert nc.is_connected
            # The server drops the request (a permissions violation): the client times out.
            with pytest.raises(nats.errors.TimeoutError):
                kv = await nc.jetstream(timeout=2).key_value(subjects.TOKENS_BUCKET)
                await kv.get(created["id"])
        finally:
            await nc.close()
