"""Write the gateway's OpenAPI document to web/src/api/openapi.json (the UI's types come from it).

Run with the project's venv: ``.venv/bin/python web/scripts/dump_openapi.py``, then
``npm run gen:api`` in web/. tests/ui/test_openapi_types.py fails when the committed copy is stale.
The document is built exactly as the gateway builds it, without starting the gateway.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from limiquantix import __version__
from limiquantix.api.app import load_route_modules
from limiquantix.api.openapi import build_document

TARGET = Path(__file__).resolve().parents[1] / "src" / "api" / "openapi.json"


def document() -> dict[str, Any]:
    """The document ``GET /v1/openapi.json`` serves."""
    return build_document((m.OPENAPI for m in load_route_modules()), version=__version__)


def render() -> str:
    """The committed file's exact text (stable key order, trailing newline)."""
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    TARGET.write_text(render())
    print(f"wrote {TARGET}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
