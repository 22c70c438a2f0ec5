"""Browser tests of the web UI share one stack, one Chromium and one local HTTP origin per module
(a stack takes seconds to start; the tests' VMs have unique names, so they do not interfere)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page

from limiquantix.local.stack import Stack
from tests.support.browser import chromium, strict_page
from tests.support.disks import make_qcow2
from tests.support.flows import FAST_ENV
from tests.support.origin import ALLOW_LOCAL_ORIGINS, Origin
from tests.support.web_build import SCREENSHOTS, ensure_built
from tests.ui.driving import upload_image


@pytest.fixture(scope="module")
def web_build() -> Path:
    return ensure_built()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ui_stack(tmp_path_factory: pytest.TempPathFactory, web_build: Path
                   ) -> AsyncIterator[Stack]:
    """NATS + image library + node agent (test driver) + API; imports from loopback allowed."""
    root = tmp_path_factory.mktemp("ui-stack")
    async with Stack(root / "stack", extra_env={**FAST_ENV, **ALLOW_LOCAL_ORIGINS}) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ui_api(ui_stack: Stack) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=ui_stack.api_url, headers=ui_stack.headers()) as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def origin(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Origin]:
    root = tmp_path_factory.mktemp("origin")
    async with Origin(root) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cloud_image(ui_api: aiohttp.ClientSession, tmp_path_factory: pytest.TempPathFactory
                      ) -> dict[str, Any]:
    """A tiny qcow2 uploaded to the module's library as ``tiny-cloud`` (the wizard's choice)."""
    path = make_qcow2(tmp_path_factory.mktemp("img") / "tiny.qcow2", "1G")
    return await upload_image(ui_api, path, "tiny-cloud", "qcow2")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserContext]:
    """Debian's Chromium with a new, empty profile (no browser is downloaded)."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    async with chromium(profile, viewport={"width": 1280, "height": 860},
                        permissions=["clipboard-read", "clipboard-write"]) as context:
        yield context


@pytest.fixture(scope="module")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: BrowserContext) -> AsyncIterator[Page]:
    """A page whose uncaught errors and CSP violations fail the test."""
    async with strict_page(browser) as opened:
        yield opened
        await opened.close()
