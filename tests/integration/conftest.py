"""Fixtures of the integration tests (the stack itself comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest

from limiquantix.common import nats_client, subjects
from limiquantix.common.vm_store import VmStore
from limiquantix.local.stack import Stack


@pytest.fixture
async def store(stack: Stack) -> AsyncIterator[VmStore]:
    """The VM store as the gateway sees it (its NATS identity), for writing half-made creates
    and reading the name index."""
    nc = await nats.connect(**stack.nats_options())
    js = nc.jetstream()
    yield VmStore(await nats_client.bucket(js, subjects.VMS_BUCKET),
                  await nats_client.bucket(js, subjects.VM_NAMES_BUCKET))
    await nc.drain()
