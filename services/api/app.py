"""The gateway's application factory: ``init(settings) -> web.Application``.

Adding a route module is ONE import and ONE entry in :data:`ROUTE_MODULES` below (the module
object itself, so tools and "find usages" see it). The convention:

* A route module is any module under ``limiquantix.api`` that defines

  - ``def setup(app: web.Application) -> None`` which registers its routes with
    ``app.router.add_*`` and may append its own ``app.cleanup_ctx`` entries (they run after
    the NATS context set up here, so ``app[app_keys.NATS]`` etc. are ready in them), and
  - ``OPENAPI: limiquantix.api.openapi.OpenApiPart`` listing every route it registers as an
    ``Operation(method=..., path=..., summary=..., body=<msgspec type>, response=<msgspec type>,
    ...)``; ``tests/api/test_openapi.py`` fails for a registered route that is not documented
    (static-file resources are exempt).

* Shared state is read from typed keys in :mod:`limiquantix.api.app_keys` (``SETTINGS``,
  ``NATS``, ``JETSTREAM``, ``VM_STORE``, ``VM_VIEW``, ``NODE_VIEW``, ``STOPPING``,
  ``WEBSOCKETS``...). Add a WebSocket to ``app[app_keys.WEBSOCKETS]`` to have it closed (1001)
  on shutdown; long-lived responses end when ``app[app_keys.STOPPING]`` is set.
* Every ``/v1/...`` route needs the bearer token unless its ``Operation`` says ``public=True``
  (the one declaration: the auth middleware reads it, the document shows it); paths outside
  ``/v1`` are not checked by the middleware.
* Raise :class:`limiquantix.common.errors.LimiquantixError` subclasses (with a ``code`` and a
  ``hint``); the problems middleware turns them into ``application/problem+json``.
  Decode bodies with :func:`limiquantix.api.http_json.decode_body` (422 with the JSON path).
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import AsyncIterator
from types import ModuleType

import msgspec
import structlog
from aiohttp import WSCloseCode, web

from limiquantix import __version__
from limiquantix.api import (
    app_keys,
    asyncapi,
    events_sse,
    metrics,
    openapi,
    routes_guest,
    routes_health,
    routes_images,
    routes_nodes,
    routes_snapshots,
    routes_tokens,
    routes_ui,
    routes_vm_devices,
    routes_vms,
    routes_webhooks,
)
from limiquantix.api.auth import PUBLIC_ROUTES, PublicRoutes, auth_middleware, load_or_create_token
from limiquantix.api.console import routes as console_routes
from limiquantix.api.kv_view import NodeView, VmView
from limiquantix.api.metrics import metrics_middleware
from limiquantix.api.openapi import OPENAPI_DOC, OpenApiPart, build_document
from limiquantix.api.problems import problems_middleware
from limiquantix.common import nats_client, subjects
from limiquantix.common.api_tokens import ApiTokenRecord
from limiquantix.common.kv_records import KvRecords
from limiquantix.common.library_tokens import load_or_create_secret
from limiquantix.common.settings import Settings
from limiquantix.common.vm_store import VmStore

log = structlog.get_logger()

# One entry per route module; order is registration order.
ROUTE_MODULES: tuple[ModuleType, ...] = (
    routes_health,
    routes_vms,
    routes_vm_devices,
    routes_snapshots,
    routes_nodes,
    events_sse,
    openapi,
    routes_ui,
    console_routes,
    routes_images,
    routes_tokens,
    routes_webhooks,
    routes_guest,
    metrics,
    asyncapi,
)


def load_route_modules(modules: tuple[ModuleType, ...] = ROUTE_MODULES) -> list[ModuleType]:
    """The route modules, each checked to follow the convention."""
    checked = []
    for module in modules:
        if not callable(getattr(module, "setup", None)):
            raise TypeError(f"route module {module.__name__} has no setup(app)")
        if not isinstance(getattr(module, "OPENAPI", None), OpenApiPart):
            raise TypeError(f"route module {module.__name__} has no OPENAPI: OpenApiPart")
        checked.append(module)
    return checked


def init(settings: Settings) -> web.Application:
    """The gateway application (NATS is connected when the runner starts it)."""
    # metrics outermost: it sees the status of every answer, problem+json ones included.
    app = web.Application(middlewares=[metrics_middleware, problems_middleware, auth_middleware])
    app[app_keys.SETTINGS] = settings
    app[app_keys.API_TOKEN] = load_or_create_token(settings)
    app[app_keys.LIBRARY_SECRET] = load_or_create_secret(settings)
    app[app_keys.STOPPING] = asyncio.Event()
    app[app_keys.WEBSOCKETS] = weakref.WeakSet()
    app.cleanup_ctx.append(_nats_ctx)
    app.on_shutdown.append(_close_long_lived)
    modules = load_route_modules()
    for module in modules:
        module.setup(app)
    app[OPENAPI_DOC] = msgspec.json.decode(_openapi_json(__version__))
    app[PUBLIC_ROUTES] = PublicRoutes.of(op for m in modules for op in m.OPENAPI.operations)
    return app


@functools.cache
def _openapi_json(version: str) -> bytes:
    """The OpenAPI document, built once per process (it depends only on the code): every
    gateway decodes its own copy in ~1 ms instead of building it in ~20 ms (tests start
    hundreds of gateways in one process)."""
    return msgspec.json.encode(build_document(
        (m.OPENAPI for m in load_route_modules()), version=version))


async def _nats_ctx(app: web.Application) -> AsyncIterator[None]:
    """NATS, JetStream set-up, KV handles, the VM store and the watched views."""
    settings = app[app_keys.SETTINGS]
    async with nats_client.connect(settings.nats_url, name="lq-api", creds=settings.nats_creds,
                                   ca_file=settings.nats_ca_file) as nc:
        js = nc.jetstream(timeout=settings.request_timeout_s)
        await nats_client.ensure_jetstream(js, heartbeat_interval_s=settings.heartbeat_interval_s,
                                           replicas=settings.jetstream_replicas)
        records = await nats_client.bucket(js, subjects.VMS_BUCKET)
        names = await nats_client.bucket(js, subjects.VM_NAMES_BUCKET)
        app[app_keys.NATS] = nc
        app[app_keys.JETSTREAM] = js
        app[app_keys.VM_STORE] = VmStore(records, names)
        app[app_keys.IDEMPOTENCY_KV] = await nats_client.bucket(js, subjects.IDEMPOTENCY_BUCKET)
        app[app_keys.TOKENS] = KvRecords(await nats_client.bucket(js, subjects.TOKENS_BUCKET),
                                         ApiTokenRecord)
        nodes_info = await js.stream_info(f"KV_{subjects.NODES_BUCKET}")
        ttl_s = float(nodes_info.config.max_age or 3 * settings.heartbeat_interval_s)
        vm_view = VmView(js, subjects.VMS_BUCKET)
        node_view = NodeView(js, subjects.NODES_BUCKET, ttl_s=ttl_s)
        app[app_keys.VM_VIEW] = vm_view
        app[app_keys.NODE_VIEW] = node_view
        await vm_view.start()
        await node_view.start()
        log.info("gateway connected", nats=settings.nats_url, node_ttl_s=ttl_s)
        try:
            yield
        finally:
            await vm_view.stop()
            await node_view.stop()


async def _close_long_lived(app: web.Application) -> None:
    """End SSE streams and close WebSockets so shutdown does not wait for clients."""
    app[app_keys.STOPPING].set()
    sockets: weakref.WeakSet[web.WebSocketResponse] = app[app_keys.WEBSOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
