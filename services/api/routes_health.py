"""``/healthz`` (the process answers) and ``/readyz`` (NATS connected, JetStream reachable)."""

from __future__ import annotations

import asyncio

import msgspec
from aiohttp import web

from limiquantix.api import app_keys
from limiquantix.api.errors import NotReady
from limiquantix.api.http_json import json_response
from limiquantix.api.openapi import OpenApiPart, Operation

READY_TIMEOUT_S = 2.0


class Health(msgspec.Struct, kw_only=True):
    """Health or readiness."""

    status: str
    nats: str = ""
    jetstream: str = ""


async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    return json_response(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    """Ready when NATS is connected and JetStream answers."""
    nc = request.app.get(app_keys.NATS)
    if nc is None or not nc.is_connected:
        raise NotReady("not connected to NATS")
    try:
        await asyncio.wait_for(request.app[app_keys.JETSTREAM].account_info(), READY_TIMEOUT_S)
    except Exception as exc:
        raise NotReady(f"JetStream not reachable: {type(exc).__name__}") from None
    return json_response(Health(status="ready", nats="connected", jetstream="ok"))


OPENAPI = OpenApiPart(tag="health", operations=(
    Operation(method="GET", path="/healthz", summary="Liveness: the process answers",
              response=Health, public=True),
    Operation(method="GET", path="/readyz",
              summary="Readiness: NATS connected, JetStream reachable",
              response=Health, public=True, errors=(503,)),
))


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
