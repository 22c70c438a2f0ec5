"""Runs a service: SIGTERM/SIGINT set an event, the service drains and the process exits 0.

A service is ``async def serve(settings, stop: asyncio.Event) -> None`` that builds everything
in one ``AsyncExitStack``, waits for ``stop`` and returns; leaving the stack drains NATS.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable

import structlog

from limiquantix.common import settings as settings_mod
from limiquantix.common.logging import configure_logging
from limiquantix.common.settings import Settings

Serve = Callable[[Settings, asyncio.Event], Awaitable[None]]


async def _run(serve: Serve, settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)


def run_service(name: str, serve: Serve) -> None:
    """Entry point body of every service's ``main()``."""
    settings = settings_mod.load()
    configure_logging(name, fmt=settings.log_format, level=settings.log_level)
    log = structlog.get_logger()
    try:
        asyncio.run(_run(serve, settings))
    except Exception:
        log.exception("service failed")
        sys.exit(1)
    log.info("stopped")
