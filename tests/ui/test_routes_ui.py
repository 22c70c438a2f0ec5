"""The web UI as the gateway serves it: the app's page on each of its routes, no token, nothing
from another origin, hashed assets cached for good, the favicon, and no path escaping."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from limiquantix.api import routes_ui
from tests.support.web_build import ensure_built

WEB_SRC = Path(__file__).resolve().parents[2] / "web" / "src"


@pytest.fixture(scope="module")
def built() -> Path:
    """The UI's build, made (or found current) by web/build.sh."""
    return ensure_built()


@pytest.fixture
async def client(built: Path) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """Only the UI routes, on a real loopback server (no NATS needed to serve files)."""
    app = web.Application()
    routes_ui.setup(app)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


@pytest.mark.parametrize("path", ["/", "/ui/", "/vms", "/vms/new", "/vms/web-1/console",
                                  "/images", "/nodes", "/events"])
async def test_every_app_route_answers_the_page_with_a_same_origin_csp(
        client: TestClient[web.Request, web.Application], path: str) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == "text/html"
    csp = response.headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'",
                      "connect-src 'self'", "frame-ancestors 'none'"):
        assert directive in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "<title>Limiquantix</title>" in await response.text()


async def test_the_page_names_only_its_own_assets_and_they_are_served_cached_for_good(
        client: TestClient[web.Request, web.Application], built: Path) -> None:
    page = (built / "index.html").read_text()
    urls = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert urls and all(u.startswith("/ui/") for u in urls), urls
    scripts = [u for u in urls if u.endswith(".js")]
    assert scripts, "the build names no script"
    for url in urls:
        response = await client.get(url)
        assert response.status == 200, url
        if url.startswith("/ui/assets/"):
            assert "immutable" in response.headers["Cache-Control"]
        if url.endswith(".js"):
            assert response.content_type in {"text/javascript", "application/javascript"}


async def test_the_favicon_is_served_where_browsers_ask(
        client: TestClient[web.Request, web.Application]) -> None:
    for path in ("/favicon.ico", "/ui/favicon.svg"):
        response = await client.get(path)
        assert response.status == 200, path
        assert "<svg" in await response.text()


def test_no_built_file_loads_anything_from_another_origin(built: Path) -> None:
    """The UI must work offline: no CDN, no web font, no remote script."""
    for path in [built / "index.html", *sorted((built / "assets").iterdir())]:
        text = path.read_text()
        # URLs in the bundle that would be fetched: in src=, href=, url(), import() or fetch().
        fetched = re.findall(
            r"""(?:src=|href=|url\(|import\(|fetch\()\s*["']?((?:https?:)?//[^"')\s]+)""", text)
        assert fetched == [], (path.name, fetched[:5])


def test_the_sources_name_no_remote_origin() -> None:
    remote = []
    for path in WEB_SRC.rglob("*"):
        if path.suffix in {".ts", ".tsx", ".css", ".html"} and path.name != "schema.d.ts":
            for url in re.findall(r"https?://[a-z0-9.-]+\.[a-z]{2,}[^\s\"'`)]*", path.read_text()):
                # Example URLs shown to the user as placeholders are text, never fetched.
                if "example" not in url and "cloud.debian.org" not in url:
                    remote.append((path.name, url))
    assert remote == []


async def test_without_a_build_the_page_says_how_to_build_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(routes_ui, "INDEX", tmp_path / "missing.html")
    app = web.Application()
    routes_ui.setup(app)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        response = await c.get("/")
        assert response.status == 503
        assert "scripts/setup.sh" in await response.text()


async def test_files_outside_the_build_are_not_served(
        client: TestClient[web.Request, web.Application]) -> None:
    for path in ("/ui/../routes_ui.py", "/ui/%2e%2e/routes_ui.py", "/ui/..%2froutes_ui.py",
                 "/ui/../novnc/core/rfb.js"):
        response = await client.get(path)
        assert response.status in {403, 404}, path
        assert "STATIC_DIR" not in await response.text()
