"""Prometheus metrics every service has (NATS, event publishing) and the ``/metrics`` helpers.

Each service keeps its own metrics in its own ``metrics.py``; all live in prometheus-client's
default registry (one process per service), exposed by :func:`metrics_response`. Names follow
Prometheus conventions: ``lq_<thing>_<unit>``, counters end in ``_total``. Labels never carry ids
(VM, image, request): their count must stay bounded.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, generate_latest

NATS_RECONNECTS = Counter(
    "lq_nats_reconnects_total", "Times this process's NATS connection came back", ["service"],
)
NATS_DISCONNECTS = Counter(
    "lq_nats_disconnects_total", "Times this process's NATS connection was lost", ["service"],
)
EVENTS_PUBLISHED = Counter(
    "lq_events_published_total", "Events stored in the events stream", ["type"],
)
EVENT_PUBLISH_FAILURES = Counter(
    "lq_event_publish_failures_total",
    "Events that could not be stored (raised, or logged and dropped when best effort)",
    ["type", "best_effort"],
)
CONSUMER_PENDING = Gauge(
    "lq_jetstream_consumer_pending_messages",
    "Messages of a durable consumer not yet delivered (num_pending)", ["consumer"],
)
CONSUMER_REDELIVERIES = Counter(
    "lq_jetstream_redeliveries_total",
    "Messages a consumer received more than once (JetStream redelivered them)", ["consumer"],
)


def metrics_body() -> bytes:
    """The exposition text of every metric of this process."""
    return generate_latest(REGISTRY)


def metrics_response() -> web.Response:
    """``GET /metrics`` answered in Prometheus's text format."""
    # Rendering walks every series: milliseconds, kept on the loop (no blocking I/O).
    return web.Response(body=metrics_body(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _get_metrics(request: web.Request) -> web.Response:
    return metrics_response()


def metrics_app() -> web.Application:
    """A tiny application serving only ``GET /metrics`` (node agent)."""
    app = web.Application()
    app.router.add_get("/metrics", _get_metrics)
    return app


@contextlib.asynccontextmanager
async def serving(host: str, port: int) -> AsyncIterator[int]:
    """Serve :func:`metrics_app` on ``host:port`` while the context is open; yields the port
    (0 in ``port``: nothing is served and 0 is yielded)."""
    if port == 0:
        yield 0
        return
    runner = web.AppRunner(metrics_app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield port
    finally:
        await runner.cleanup()

