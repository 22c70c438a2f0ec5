"""(being written)"""

from __future__ import annotations

from aiohttp import web

from limiquantix.api.openapi import OpenApiPart

OPENAPI = OpenApiPart(tag="routes_nodes")


def setup(app: web.Application) -> None:
    pass
