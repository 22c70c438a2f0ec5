"""OpenAPI 3.1 document of the gateway, built from msgspec schemas and each route module's part.

Every route module exports ``OPENAPI = OpenApiPart(operations=(Operation(...), ...))``; the app
collects the parts in :func:`limiquantix.api.app.init` and this module serves the merged document
at ``GET /v1/openapi.json`` (public: it holds no secrets). Request and response bodies are named by
their msgspec types; ``msgspec.json.schema_components`` turns them into ``components.schemas``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any, Literal

import msgspec
from aiohttp import web

OPENAPI_VERSION = "3.1.0"
_REF_TEMPLATE = "#/components/schemas/{name}"
_PATH_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Param:
    """A query or header parameter (path parameters are read from the path itself)."""

    name: str
    where: Literal["query", "header"] = "query"
    description: str = ""
    schema: dict[str, Any] = dataclasses.field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Operation:
    """One method on one path, as registered with aiohttp (path in aiohttp's ``{name}`` form)."""

    method: str
    path: str
    summary: str
    body: Any = None  # msgspec type of the JSON request body
    response: Any = None  # msgspec type of the JSON response body; None: see ``media_type``
    status: int = 200
    media_type: str = "application/json"  # e.g. "text/plain", "text/event-stream", "text/html"
    params: tuple[Param, ...] = ()
    public: bool = False  # no bearer token needed
    errors: tuple[int, ...] = ()  # problem+json statuses worth documenting
    description: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class OpenApiPart:
    """What one route module contributes to the document."""

    tag: str
    operations: tuple[Operation, ...] = ()


class Problem(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details, as every error is answered (plus error-specific fields)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    hint: str = ""
    request_id: str = ""


OPENAPI_DOC = web.AppKey("openapi_doc", dict)


def _operation_doc(
    op: Operation, tag: str, refs: dict[Any, dict[str, Any]]
) -> dict[str, Any]:
    doc: dict[str, Any] = {"summary": op.summary, "tags": [tag],
                           "operationId": f"{op.method.lower()}_{_slug(op.path)}"}
    if op.description:
        doc["description"] = op.description
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(op.path)
    ]
    params += [
        {"name": p.name, "in": p.where, "required": p.required, "schema": p.schema,
         **({"description": p.description} if p.description else {})}
        for p in op.params
    ]
    if params:
        doc["parameters"] = params
    if op.body is not None:
        doc["requestBody"] = {"required": True,
                              "content": {"application/json": {"schema": refs[op.body]}}}
    ok: dict[str, Any] = {"description": HTTPStatus(op.status).phrase}
    if op.response is not None:
        ok["content"] = {op.media_type: {"schema": refs[op.response]}}
    elif op.media_type != "application/json":
        ok["content"] = {op.media_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(op.status): ok}
    problem = {"content": {"application/problem+json": {"schema": refs[Problem]}}}
    for status in sorted({*op.errors, *(() if op.public else (401,)), 422 if op.body else 500}):
        responses[str(status)] = {"description": HTTPStatus(status).phrase, **problem}
    doc["responses"] = responses
    if op.public:
        doc["security"] = []
    return doc


def _slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", _PATH_PARAM.sub(r"\1", path).lower()).strip("_")


def openapi_path(path: str) -> str:
    """aiohttp's ``{name:regex}`` path form in OpenAPI's ``{name}`` form."""
    return _PATH_PARAM.sub(r"{\1}", path)


def build_document(parts: Iterable[OpenApiPart], *, version: str) -> dict[str, Any]:
    """The OpenAPI document of every part."""
    parts = list(parts)
    types: list[Any] = [Problem]
    for part in parts:
        for op in part.operations:
            types += [t for t in (op.body, op.response) if t is not None and t not in types]
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF_TEMPLATE)
    refs = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for part in parts:
        for op in part.operations:
            paths.setdefault(openapi_path(op.path), {})[op.method.lower()] = _operation_doc(
                op, part.tag, refs
            )
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Limiquantix API", "version": version,
                 "description": "VM provisioning: errors are application/problem+json "
                                "with a stable `code`."},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "tags": [{"name": part.tag} for part in parts],
    }


async def get_openapi(request: web.Request) -> web.Response:
    """The OpenAPI document."""
    return web.json_response(request.app[OPENAPI_DOC])


OPENAPI = OpenApiPart(tag="meta", operations=(
    Operation(method="GET", path="/v1/openapi.json", summary="This OpenAPI 3.1 document",
              public=True, media_type="application/json"),
))


def setup(app: web.Application) -> None:
    """Register GET /v1/openapi.json (the document itself is built by app.init)."""
    app.router.add_get("/v1/openapi.json", get_openapi)
