"""The gateway's Prometheus metrics and ``GET /metrics`` (on the API's port).

- HTTP requests by method, route (aiohttp's canonical path, e.g. ``/v1/vms/{vm_id}``: never a
  raw id) and status, with a latency histogram (:func:`metrics_middleware`);
- VMs by state and node, counted from the watched VM view when Prometheus scrapes (never
  per request): :class:`VmCollector`;
- console sessions (started, open) and bytes each way.

``/metrics`` sits outside ``/v1`` (where Prometheus looks for it) but needs the bearer token
(any role) like ``/v1``, unless ``LQ_METRICS_PUBLIC=true``.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from aiohttp import web
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from limiquantix.api import app_keys
from limiquantix.api.auth import _bearer, authenticate
from limiquantix.api.errors import Unauthorized
from limiquantix.api.openapi import OpenApiPart, Operation
from limiquantix.common.metrics import metrics_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HTTP_REQUESTS = Counter(
    "lq_http_requests_total", "HTTP requests answered by the gateway",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "lq_http_request_duration_seconds",
    "Time from a request's arrival to its handler's return (streams: their whole life)",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CONSOLE_SESSIONS = Counter("lq_console_sessions_total", "Console sessions started")
CONSOLE_SESSIONS_OPEN = Gauge("lq_console_sessions_open", "Console sessions open now")
CONSOLE_BYTES = Counter(
    "lq_console_bytes_total", "Bytes piped by ended console sessions",
    ["direction"],  # to_vnc | to_client
)

UNMATCHED = "unmatched"  # 404s: the raw path would be an unbounded label


def route_of(request: web.Request) -> str:
    """The route's canonical path (``/v1/vms/{vm_id}``), or ``unmatched``."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    if resource is None or request.match_info.http_exception is not None:
        return UNMATCHED
    return resource.canonical


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every request by route and status and time it (outermost: problems included)."""
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route, method = route_of(request), request.method
        HTTP_REQUESTS.labels(method, route, str(status)).inc()
        HTTP_DURATION.labels(method, route).observe(time.monotonic() - started)


class VmCollector(Collector):
    """``lq_vms{state, node}`` counted from the gateway's VM view at scrape time."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("lq_vms", "VMs by state and node (the gateway's view)",
                                   labels=["state", "node"])
        view = self._app.get(app_keys.VM_VIEW)
        if view is not None:
            tally = Tally((str(vm.state), vm.node) for vm in view.values())
            for (state, node), count in sorted(tally.items()):
                family.add_metric([state, node], count)
        yield family

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Without describe(), registering would call collect() (before the view exists).
        yield GaugeMetricFamily("lq_vms", "VMs by state and node (the gateway's view)",
                                labels=["state", "node"])


def console_session_started() -> None:
    CONSOLE_SESSIONS.inc()
    CONSOLE_SESSIONS_OPEN.inc()


def console_session_ended(bytes_to_vnc: int, bytes_to_client: int) -> None:
    CONSOLE_SESSIONS_OPEN.dec()
    CONSOLE_BYTES.labels("to_vnc").inc(bytes_to_vnc)
    CONSOLE_BYTES.labels("to_client").inc(bytes_to_client)


# Outside /v1 the auth middleware does not look: the handler checks (LQ_METRICS_PUBLIC).
async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus text format; the bearer token (any role) unless LQ_METRICS_PUBLIC."""
    if not request.app[app_keys.SETTINGS].metrics_public:
        given = _bearer(request)
        if given is None:
            raise Unauthorized("missing bearer token (or set LQ_METRICS_PUBLIC=true)")
        await authenticate(request.app, given)
    return metrics_response()


OPENAPI = OpenApiPart(tag="meta", operations=(
    Operation(method="GET", path="/metrics", summary="Prometheus metrics of this gateway",
              media_type="text/plain",
              description="Prometheus text exposition format. Needs the bearer token (any "
                          "role) unless the gateway runs with LQ_METRICS_PUBLIC=true."),
))

_COLLECTOR = web.AppKey("vm_collector", VmCollector)


async def _collector_ctx(app: web.Application) -> AsyncIterator[None]:
    collector = VmCollector(app)
    REGISTRY.register(collector)
    app[_COLLECTOR] = collector
    try:
        yield
    finally:
        REGISTRY.unregister(collector)


def setup(app: web.Application) -> None:
    """Register GET /metrics and the VM gauge collector (the middleware is added by app.init)."""
    app.router.add_get("/metrics", get_metrics)
    app.cleanup_ctx.append(_collector_ctx)
