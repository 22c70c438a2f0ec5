"""The web UI: ``/`` and ``/ui/`` answer its page, ``/ui/...`` its static ES modules and CSS.

Static assets need no token (they hold no data); the page asks the user for the API token and
sends it on every ``/v1`` call. Nothing is fetched from outside this server (the page's
Content-Security-Policy forbids it), so the UI works on a machine with no Internet access.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from limiquantix.api.openapi import OpenApiPart, Operation
from limiquantix.api.page_headers import PAGE_HEADERS

STATIC_DIR = Path(__file__).with_name("static")
INDEX = STATIC_DIR / "index.html"
UI_PREFIX = "/ui"


async def index(request: web.Request) -> web.FileResponse:
    """The UI's single page."""
    return web.FileResponse(INDEX, headers=PAGE_HEADERS)


OPENAPI = OpenApiPart(tag="ui", operations=(
    Operation(method="GET", path="/", summary="Web UI (asks for the API token)",
              media_type="text/html", public=True),
    Operation(method="GET", path="/ui/", summary="Web UI (same page as /)",
              media_type="text/html", public=True),
))


def setup(app: web.Application) -> None:
    app.router.add_get("/", index)
    # Registered before the static resource so /ui/ is the page, not a directory listing.
    app.router.add_get(f"{UI_PREFIX}/", index)
    app.router.add_static(UI_PREFIX, STATIC_DIR, follow_symlinks=False, show_index=False)
