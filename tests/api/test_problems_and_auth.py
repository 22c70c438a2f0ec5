"""Errors as problem+json, and the bearer token (configured or generated 0600)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from limiquantix.api.auth import PUBLIC_ROUTES, PublicRoutes, load_or_create_token
from limiquantix.api.errors import IllegalTransition
from limiquantix.api.openapi import OPENAPI_DOC, Operation
from limiquantix.api.problems import PROBLEM_TYPE, problem_body, validation_error
from limiquantix.common import settings
from limiquantix.common.vms import CreateVmRequest
from tests.support.api_gateway import Gateway, MakeGateway


def test_a_typed_error_becomes_a_problem_with_code_hint_and_details() -> None:
    err = IllegalTransition("cannot stop VM 'x': it is stopped", vm_id="v1", state="stopped",
                            code="smuggled")
    body = problem_body(err.to_reply(), "req-1")
    assert body["type"] == "urn:limiquantix:problem:illegal_transition"
    assert body["status"] == 409 and body["title"] == "Conflict"
    assert body["code"] == "illegal_transition"  # details never replace the standard fields
    assert body["detail"] == "cannot stop VM 'x': it is stopped"
    assert body["hint"] and body["request_id"] == "req-1"
    assert body["vm_id"] == "v1" and body["state"] == "stopped"


def test_a_validation_error_names_the_json_path() -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(b'{"name":"ok","image":"/i","cloud_init":{"user":"Root!"}}',
                            type=CreateVmRequest)
    err = validation_error(caught.value)
    assert err.status == 422 and err.code == "invalid_request"
    assert err.details["path"] == "$.cloud_init.user" and "$.cloud_init.user" in err.message


def test_a_generated_token_is_written_0600_and_reused(tmp_path: Path) -> None:
    config = settings.load({}, data_dir=str(tmp_path / "data"))
    first = load_or_create_token(config)
    path = tmp_path / "data" / "api-token"
    assert len(first) >= 32 and path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(config) == first
    assert load_or_create_token(settings.load({}, data_dir=str(tmp_path / "data"),
                                              api_token="given")) == "given"


async def test_v1_needs_the_token_and_401_is_a_problem(gw: Gateway) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        async with gw.client.get("/v1/vms", headers=headers) as response:
            assert response.status == 401
            assert response.content_type == PROBLEM_TYPE
            problem = await response.json()
            assert problem["code"] == "unauthorized" and "api-token" in problem["hint"]
    async with gw.client.get("/v1/openapi.json") as response:
        assert response.status == 200  # public
    async with gw.client.get("/v1/vms", headers=gw.auth) as response:
        assert response.status == 200


async def test_exactly_the_routes_the_openapi_document_marks_public_answer_without_a_token(
        gw: Gateway) -> None:
    """``public`` is declared once, on the Operation: the middleware follows the document."""
    doc = gw.client.app[OPENAPI_DOC]
    asked = []
    for path, operations in doc["paths"].items():
        if not path.startswith("/v1/"):
            continue
        url = re.sub(r"\{[^}]+\}", "x", path)
        for method, operation in operations.items():
            public = operation.get("security") == []
            async with gw.client.request(method.upper(), url) as response:
                assert (response.status != 401) == public, (method, path, response.status)
            asked.append(public)
    assert True in asked and False in asked  # both kinds were checked


async def test_the_gateway_generates_its_token_when_none_is_configured(
        make_gateway: MakeGateway, tmp_path: Path) -> None:
    gw = await make_gateway(api_token="", data_dir=str(tmp_path / "gen"))
    token = (tmp_path / "gen" / "api-token").read_text().strip()
    async with gw.client.get("/v1/vms", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200


async def test_bad_json_unknown_fields_and_routes_are_problems(gw: Gateway) -> None:
    async with gw.client.post("/v1/vms", data=b"{not json", headers=gw.auth) as response:
        assert response.status == 422
        assert (await response.json())["code"] == "invalid_request"
    async with gw.client.post("/v1/vms", json={"name": "a", "image": "/i", "colour": "red"},
                              headers=gw.auth) as response:
        problem = await response.json()
        assert response.status == 422 and "colour" in problem["detail"]
    async with gw.client.get("/v1/nothing-here", headers=gw.auth) as response:
        assert response.status == 404 and response.content_type == PROBLEM_TYPE
        assert (await response.json())["code"] == "route_not_found"
    async with gw.client.put("/v1/vms", headers=gw.auth) as response:
        assert response.status == 405
        assert (await response.json())["code"] == "method_not_allowed"
    async with gw.client.get("/v1/vms/a.b", headers=gw.auth) as response:
        assert response.status == 404


async def test_request_ids_are_echoed_or_made(gw: Gateway) -> None:
    async with gw.client.get("/v1/vms/missing", headers={**gw.auth, "X-Request-Id": "abc-1"}
                             ) as response:
        assert response.headers["X-Request-Id"] == "abc-1"
        assert (await response.json())["request_id"] == "abc-1"
    async with gw.client.get("/healthz") as response:
        assert len(response.headers["X-Request-Id"]) == 32


async def test_an_unexpected_exception_is_a_500_without_internals(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from limiquantix.api.auth import auth_middleware
    from limiquantix.api.problems import problems_middleware

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("database password is hunter2")

    app = web.Application(middlewares=[problems_middleware, auth_middleware])
    app[PUBLIC_ROUTES] = PublicRoutes.of(
        [Operation(method="GET", path="/v1/broken", summary="", public=True)])
    app.router.add_get("/v1/broken", broken)
    async with TestClient(TestServer(app)) as client, client.get("/v1/broken") as response:
        problem = await response.json()
    assert response.status == 500 and problem["code"] == "internal"
    assert "hunter2" not in str(problem)
    assert problem["request_id"] in problem["hint"]
    logged = capsys.readouterr()
    assert "hunter2" in logged.out + logged.err and problem["request_id"] in logged.out + logged.err
