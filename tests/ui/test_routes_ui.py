"""The web UI's files as the gateway serves them: no token, nothing from another origin."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from limiquantix.api import routes_ui

STATIC = routes_ui.STATIC_DIR
UI_FILES = sorted(
    p for p in STATIC.iterdir() if p.is_file() and p.suffix in {".html", ".js", ".css", ".svg"}
)


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """Only the UI routes, on a real loopback server (no NATS needed to serve files)."""
    app = web.Application()
    routes_ui.setup(app)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


@pytest.mark.parametrize("path", ["/", "/ui/"])
async def test_page_is_served_without_a_token_with_a_same_origin_csp(
        client: TestClient[web.Request, web.Application], path: str) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == "text/html"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "<title>Limiquantix</title>" in await response.text()


async def test_every_asset_the_page_and_its_modules_name_is_served(
        client: TestClient[web.Request, web.Application]) -> None:
    """Follows index.html's links and every ES module's imports, as a browser would."""
    page = (STATIC / "index.html").read_text()
    pending = re.findall(r'(?:src|href)="(/ui/[^"]+)"', page)
    assert "/ui/app.js" in pending
    seen: set[str] = set()
    while pending:
        url = pending.pop()
        if url in seen:
            continue
        seen.add(url)
        response = await client.get(url)
        assert response.status == 200, url
        if url.endswith(".js"):
            assert response.content_type in {"text/javascript", "application/javascript"}
            source = await response.text()
            for spec in re.findall(r'^import .* from "([^"]+)";$', source, re.MULTILINE):
                assert spec.startswith("./"), f"{url} imports {spec} from elsewhere"
                pending.append("/ui/" + spec[2:])
    assert {"/ui/app.js", "/ui/api.js", "/ui/sse.js", "/ui/views.js", "/ui/dom.js",
            "/ui/style.css", "/ui/favicon.svg"} <= seen


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_no_ui_file_loads_anything_from_another_origin(path: Path) -> None:
    """The UI must work offline: no CDN, no web font, no remote script."""
    text = path.read_text()
    remote = [u for u in re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s\"')]*", text)
              if "www.w3.org/2000/svg" not in u]  # the SVG namespace is a name, not a fetch
    assert remote == []


async def test_files_outside_the_static_dir_are_not_served(
        client: TestClient[web.Request, web.Application]) -> None:
    for path in ("/ui/../routes_ui.py", "/ui/%2e%2e/routes_ui.py", "/ui/..%2froutes_ui.py"):
        response = await client.get(path)
        assert response.status in {403, 404}, path
        assert "STATIC_DIR" not in await response.text()
