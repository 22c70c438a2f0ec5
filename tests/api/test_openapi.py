"""The OpenAPI document covers every registered route and resolves every schema reference."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from limiquantix.api.app import ROUTE_MODULES, init, load_route_modules
from limiquantix.api.openapi import openapi_path
from limiquantix.common import settings


def app_and_doc(tmp_path: Path) -> tuple[web.Application, dict[str, Any]]:
    app = init(settings.load({}, data_dir=str(tmp_path), api_token="t"))
    from limiquantix.api.openapi import OPENAPI_DOC

    return app, app[OPENAPI_DOC]


def test_every_registered_route_is_documented(tmp_path: Path) -> None:
    app, doc = app_and_doc(tmp_path)
    missing = []
    for route in app.router.routes():
        resource = route.resource
        if route.method in ("HEAD", "*") or isinstance(resource, web.StaticResource):
            continue
        assert resource is not None
        path = openapi_path(resource.canonical)
        if route.method.lower() not in doc["paths"].get(path, {}):
            missing.append(f"{route.method} {path}")
    assert missing == []


def test_every_documented_operation_is_registered(tmp_path: Path) -> None:
    app, doc = app_and_doc(tmp_path)
    registered = {(r.method.lower(), openapi_path(r.resource.canonical))
                  for r in app.router.routes() if r.resource is not None}
    for path, operations in doc["paths"].items():
        for method in operations:
            assert (method, path) in registered


def test_every_schema_reference_resolves(tmp_path: Path) -> None:
    _, doc = app_and_doc(tmp_path)
    text = json.dumps(doc)
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', text))
    assert refs and refs <= set(doc["components"]["schemas"])
    assert doc["openapi"] == "3.1.0"
    create = doc["paths"]["/v1/vms"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateVmRequest"}
    assert create["responses"]["202"]["description"] == "Accepted"
    assert create["responses"]["401"]["description"] == "Unauthorized"
    assert doc["paths"]["/healthz"]["get"]["security"] == []


def test_route_modules_follow_the_convention() -> None:
    assert len(load_route_modules()) == len(ROUTE_MODULES)
