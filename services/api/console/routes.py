"""Console routes: tickets, the WebSocket, the console page and noVNC's static ES modules.

- ``POST /v1/vms/{vm}/console`` (bearer token) → 201 ``{token, url, expires_at, vm_id}``.
- ``GET /v1/console/ws?token=…`` (public: the single-use ticket is the credential, since browsers
  cannot put headers on a WebSocket) → the VNC byte stream; see gateway.py for the checks.
- ``GET /v1/vms/{vm}/console`` (public) → a static HTML page. It holds nothing secret and
  names no VM itself: its script takes a single-use ticket from the URL fragment (``#ticket=…``,
  what ``lq vm console`` prints; never sent to a server, removed from the address bar at once),
  or asks for one with the API token from ``localStorage['lq.token']`` (shared with the web UI;
  older links may carry it as ``#token=…``), and opens noVNC on the ticket's WebSocket.
- ``/console/novnc/…`` noVNC (installed by scripts/setup.sh, not committed) and
  ``/console/assets/…`` the page's script and style, outside ``/v1`` (no token needed).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from aiohttp import web

from limiquantix.api.console.gateway import ConsoleGateway, principal
from limiquantix.api.console.tickets import WS_PATH, TicketResponse
from limiquantix.api.http_json import json_response
from limiquantix.api.openapi import OpenApiPart, Operation, Param
from limiquantix.api.page_headers import PAGE_HEADERS

log = structlog.get_logger()

GATEWAY = web.AppKey("console_gateway", ConsoleGateway)

HERE = Path(__file__).parent
NOVNC_DIR = HERE.parent / "static" / "novnc"
ASSETS_DIR = HERE / "assets"
PAGE = ASSETS_DIR / "console.html"
NOVNC_PREFIX = "/console/novnc"
ASSETS_PREFIX = "/console/assets"


async def create_ticket(request: web.Request) -> web.Response:
    """A single-use console ticket for the VM."""
    gateway = request.app[GATEWAY]
    ticket = await gateway.issue(request.match_info["vm"], principal(request))
    return json_response(ticket, status=201, headers={"Cache-Control": "no-store"})


async def console_ws(request: web.Request) -> web.StreamResponse:
    """The console WebSocket; the ticket in ``?token=`` is the credential."""
    return await request.app[GATEWAY].serve(request)


async def console_page(request: web.Request) -> web.StreamResponse:
    """The console page (static; it asks for its ticket itself)."""
    return web.FileResponse(PAGE, headers=PAGE_HEADERS)


OPENAPI = OpenApiPart(tag="console", operations=(
    Operation(
        method="POST", path="/v1/vms/{vm}/console", summary="Issue a console ticket",
        response=TicketResponse, status=201, errors=(401, 404, 409),
        description="The token works once, for one WebSocket opened before `expires_at` "
                    "(LQ_CONSOLE_TICKET_TTL_S); only its SHA-256 is stored.",
    ),
    Operation(
        method="GET", path=WS_PATH, summary="Console WebSocket (RFB over binary frames)",
        media_type="application/octet-stream", public=True, errors=(400, 403, 404, 409),
        params=(Param(name="token", required=True, description="the ticket's token"),),
        description="Origin must be this gateway or in LQ_CONSOLE_ORIGINS. Closes 1011 with a "
                    "reason when the VNC side fails or the VM stops or is deleted; 1000 on idle "
                    "timeout or maximum session length; 1001 on gateway shutdown.",
    ),
    Operation(
        method="GET", path="/v1/vms/{vm}/console", summary="Console page (noVNC)",
        media_type="text/html", public=True,
        description="Open as /v1/vms/{vm}/console#ticket=<ticket token> (a link that works "
                    "once, as `lq vm console` prints), or with the API token the web UI saved "
                    "(the page then asks for a ticket itself).",
    ),
))


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/vms/{vm}/console", create_ticket)
    app.router.add_get("/v1/vms/{vm}/console", console_page)
    app.router.add_get(WS_PATH, console_ws)
    app.router.add_static(ASSETS_PREFIX, ASSETS_DIR, follow_symlinks=False)
    if (NOVNC_DIR / "core" / "rfb.js").exists():
        app.router.add_static(NOVNC_PREFIX, NOVNC_DIR, follow_symlinks=False)
    else:
        log.warning("noVNC not installed; console pages cannot connect",
                    hint="run scripts/setup.sh")
    app.cleanup_ctx.append(_gateway_ctx)
    app.on_shutdown.append(_end_sessions)


async def _gateway_ctx(app: web.Application) -> AsyncIterator[None]:
    app[GATEWAY] = await ConsoleGateway.from_app(app)
    # Everything built at start-up lives as long as the process: moving it out of the cyclic
    # collector's reach keeps full collections short, which a console's keystroke latency
    # notices (bench/console.py: p99 536 -> 350 us, bulk throughput up). Harmless for the rest
    # of the gateway; main() is the better home for it if the gateway wants it everywhere.
    gc.collect()
    gc.freeze()
    yield


async def _end_sessions(app: web.Application) -> None:
    if GATEWAY in app:
        await app[GATEWAY].shutdown()
