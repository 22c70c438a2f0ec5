"""Runs a service: SIGTERM/SIGINT set an event, the service drains and the process exits 0.

A service is ``async def serve(settings, stop: asyncio.Event) -> None`` that builds everything
in one ``AsyncExitStack``, waits for ``stop`` and returns; leaving the stack drains NATS.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata

import structlog

from limiquantix.common import process_health
from limiquantix.common import settings as settings_mod
from limiquantix.common.logging import configure_logging
from limiquantix.common.settings import Settings

Serve = Callable[[Settings, asyncio.Event], Awaitable[None]]


async def _run(serve: Serve, settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    process_health.time_gc()
    probe = asyncio.create_task(process_health.probe_loop_lag(), name="loop-lag-probe")
    try:
        await serve(settings, stop)
    finally:
        probe.cancel()


def package_version() -> str:
    """The installed package's version ("0+unknown" from a bare source tree)."""
    try:
        return metadata.version("limiquantix")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def parse_arguments(prog: str, description: str, argv: Sequence[str] | None = None, *,
                    options: Callable[[argparse.ArgumentParser], None] | None = None,
                    ) -> argparse.Namespace:
    """``--help`` and ``--version``; anything else is refused (exit 2) before a thing starts.

    Services are configured by ``LQ_*`` variables only, so a typo'd flag is never ignored;
    ``options`` adds a command's own flags (``lq-local --nats-cluster``).
    """
    parser = argparse.ArgumentParser(
        prog=prog, description=description,
        epilog="Configured by LQ_* environment variables; "
               "`python -m limiquantix.common.settings` lists them with their defaults.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    if options is not None:
        options(parser)
    return parser.parse_args(argv)


def run_service(name: str, serve: Serve, description: str = "") -> None:
    """Entry point body of every service's ``main()``."""
    parse_arguments(f"lq-{name}", description)
    settings = settings_mod.load()
    configure_logging(name, fmt=settings.log_format, level=settings.log_level)
    log = structlog.get_logger()
    # Everything imported so far (aiohttp, nats, msgspec, libvirt: ~10^5 objects) lives as
    # long as the process; frozen, each full collection skips it instead of walking it again
    # (the pauses that make a latency tail: docs/fleet.md).
    gc.freeze()
    try:
        asyncio.run(_run(serve, settings))
    except Exception:
        log.exception("service failed")
        sys.exit(1)
    log.info("stopped")
