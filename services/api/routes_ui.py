"""The web UI: a single-page app (web/, TypeScript + React, built by Vite into ``static/app``).

``/`` and every client-side route of the app (``/vms``, ``/vms/...``, ``/images``, ``/nodes``,
``/events``) answer its ``index.html``; ``/ui/...`` serves the built assets (hashed file names,
cached for good). Nothing needs a token here (no data): the app asks for the API token and sends
it on every ``/v1`` call. Nothing is fetched from outside this server (the page's
Content-Security-Policy forbids it), so the UI works on a machine with no Internet access.

The build output is not committed: ``scripts/setup.sh`` builds it (Node.js >= 18). Without it the
page routes answer 503 with a page saying so.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from limiquantix.api.openapi import OpenApiPart, Operation
from limiquantix.api.page_headers import PAGE_HEADERS

STATIC_DIR = Path(__file__).with_name("static")
APP_DIR = STATIC_DIR / "app"  # Vite's outDir (web/vite.config.ts)
INDEX = APP_DIR / "index.html"
FAVICON = APP_DIR / "favicon.svg"
UI_PREFIX = "/ui"
ASSETS_PREFIX = f"{UI_PREFIX}/assets/"
# The app's own routes (web/src/lib/router.tsx): a reload or a shared link lands on the app.
APP_ROUTES = ("/", f"{UI_PREFIX}/", "/vms", "/vms/{tail:.+}", "/images", "/nodes", "/events")
# Hashed asset names change with their content: a browser may keep them for good.
IMMUTABLE = "public, max-age=31536000, immutable"

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Limiquantix</title></head>
<body><h1>The web UI is not built</h1>
<p>Run <code>scripts/setup.sh</code> on this machine (it needs Node.js 18 or newer and npm), then
restart the gateway. The API works without it: <code>lq</code>, <code>/v1/...</code>.</p>
</body></html>
"""


async def index(request: web.Request) -> web.StreamResponse:
    """The app's single page, for every route of the app."""
    if not INDEX.is_file():
        return web.Response(status=503, text=NOT_BUILT, content_type="text/html",
                            headers=PAGE_HEADERS)
    return web.FileResponse(INDEX, headers=PAGE_HEADERS)


async def favicon(request: web.Request) -> web.StreamResponse:
    """``/favicon.ico`` (browsers ask for it on any page): the app's SVG icon."""
    if not FAVICON.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(FAVICON, headers={"Content-Type": "image/svg+xml",
                                              "Cache-Control": "public, max-age=86400"})


async def _asset_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith(ASSETS_PREFIX) and response.status == 200:
        response.headers["Cache-Control"] = IMMUTABLE
    if request.path.startswith(f"{UI_PREFIX}/"):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")


OPENAPI = OpenApiPart(tag="ui", operations=(
    *(Operation(method="GET", path=path, summary="Web UI (the app asks for the API token)",
                media_type="text/html", public=True, errors=(503,),
                description="The same page for every route of the single-page app; 503 when "
                            "the UI was not built (scripts/setup.sh).")
      for path in APP_ROUTES),
    Operation(method="GET", path="/favicon.ico", summary="The UI's icon (SVG)",
              media_type="image/svg+xml", public=True, errors=(404,)),
))


def setup(app: web.Application) -> None:
    for path in APP_ROUTES:
        # Registered before the static resource so /ui/ is the page, not a directory listing.
        app.router.add_get(path, index)
    app.router.add_get("/favicon.ico", favicon)
    if APP_DIR.is_dir():
        app.router.add_static(UI_PREFIX, APP_DIR, follow_symlinks=False, show_index=False)
    app.on_response_prepare.append(_asset_headers)
