"""Webhook tests: the whole system (real processes) plus an HTTP receiver on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from limiquantix.local.stack import Stack
from tests.support.flows import FAST_ENV
from tests.support.webhooks import Receiver

# Receivers listen on loopback, which the webhook address policy refuses unless opened; retries
# are capped at 1 s so a receiver that comes back is reached within a test's time.
WEBHOOK_ENV = {**FAST_ENV, "LQ_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
               "LQ_WEBHOOK_RETRY_MAX_S": "1", "LQ_WEBHOOK_TIMEOUT_S": "3"}


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """NATS + image library + one node agent (libvirt test driver) + API, loopback webhooks."""
    async with Stack(tmp_path / "stack", extra_env=WEBHOOK_ENV) as running:
        yield running


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on a free loopback port, not listening until ``start()``."""
    running = Receiver()
    try:
        yield running
    finally:
        await running.stop()
