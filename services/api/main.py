"""``lq-api``: runs the gateway until SIGTERM/SIGINT, then closes streams and drains NATS."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from limiquantix.api.app import init
from limiquantix.common.http_guard import GuardedSite, runner_options
from limiquantix.common.runner import run_service
from limiquantix.common.settings import Settings

log = structlog.get_logger()

# Below Kubernetes' default 30 s termination grace period, so in-flight requests finish
# and the process still exits on its own before SIGKILL.
SHUTDOWN_TIMEOUT_S = 20.0


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Serve the API on ``api_host:api_port`` until ``stop`` is set."""
    runner = web.AppRunner(init(settings), shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                           access_log=None,
                           **runner_options(header_timeout_s=settings.http_header_timeout_s))
    await runner.setup()
    try:
        site = GuardedSite(runner, settings.api_host, settings.api_port,
                           max_connections=settings.http_max_connections)
        await site.start()
        log.info("api listening", url=f"http://{settings.api_host}:{settings.api_port}")
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    run_service("api", serve, "The Limiquantix API gateway: REST, events (SSE), consoles, web UI.")
