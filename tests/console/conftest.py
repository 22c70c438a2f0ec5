"""Console fixtures: the real gateway app on a real NATS (``tests/support/console.py``), a real
QEMU display on qemu:///system, and headless Chromium for the console page."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import BrowserContext, Page

from limiquantix.api.app import init
from limiquantix.common import nats_client, settings, subjects
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.vm_store import VmStore
from tests.support.browser import chromium, strict_page
from tests.support.console import TOKEN, Gateway, MakeGateway, QemuDisplay, qemu_display


@pytest.fixture
async def make_gateway(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[MakeGateway]:
    """Start the gateway app with console settings overridden; everything stopped at the end."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**overrides: Any) -> Gateway:
            config = settings.load({}, **{
                "nats_url": nats_server.url, "data_dir": str(tmp_path / "api"),
                "api_token": TOKEN, "heartbeat_interval_s": 1.0,
                "nats_creds": str(nats_server.creds_for("api")), **overrides,
            })
            server = TestServer(init(config), host="127.0.0.1")
            await server.start_server()
            stack.push_async_callback(server.close)
            nc = await nats.connect(**nats_server.connect_options("api"))  # as the gateway
            stack.push_async_callback(nc.close)
            js = nc.jetstream()
            await nats_client.ensure_jetstream(js, heartbeat_interval_s=1.0)
            store = VmStore(await js.key_value(subjects.VMS_BUCKET),
                            await js.key_value(subjects.VM_NAMES_BUCKET))
            return Gateway(server=server, nc=nc, js=js, store=store)

        yield make


@pytest.fixture
async def gateway(make_gateway: MakeGateway) -> Gateway:
    """A gateway that accepts WebSockets without Origin (a Python client is no browser)."""
    return await make_gateway(console_allow_no_origin=True)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="module")
def qemu() -> Iterator[QemuDisplay]:
    """One QEMU display shared by a module's tests (each test its own VM record)."""
    with qemu_display() as display:
        yield display


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """Debian's Chromium with a new, empty profile."""
    async with chromium(tmp_path / "chromium-profile",
                        viewport={"width": 1024, "height": 768}) as context:
        yield context


@pytest.fixture
async def page(browser: BrowserContext) -> AsyncIterator[Page]:
    async with strict_page(browser) as page:
        yield page
