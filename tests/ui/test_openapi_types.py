"""The UI's API types come from the gateway's OpenAPI document: the committed copy
(web/src/api/openapi.json) and the TypeScript generated from it must match the code.

When this fails, regenerate both and commit them:
``.venv/bin/python web/scripts/dump_openapi.py && (cd web && npm run gen:api)``.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from limiquantix.api.app import init
from limiquantix.api.openapi import OPENAPI_DOC
from limiquantix.common import settings
from tests.support.golden import assert_golden
from tests.support.web_build import WEB, ensure_built

REGENERATE = ".venv/bin/python web/scripts/dump_openapi.py && (cd web && npm run gen:api)"


def _dump_script() -> ModuleType:
    path = WEB / "scripts" / "dump_openapi.py"
    spec = importlib.util.spec_from_file_location("dump_openapi", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_openapi_document_is_the_gateways() -> None:
    dump = _dump_script()
    committed = (WEB / "src" / "api" / "openapi.json").read_text()
    assert committed == dump.render(), f"web/src/api/openapi.json is stale: run {REGENERATE}"
    served_paths = set(json.loads(committed)["paths"])
    assert {"/v1/vms", "/v1/images", "/v1/nodes", "/v1/events"} <= served_paths


def test_the_served_openapi_document_is_the_golden_file(tmp_path: Path,
                                                        update_golden: bool) -> None:
    """What ``GET /v1/openapi.json`` serves, byte for byte the committed copy (the golden file
    of the API's contract: ``--update-golden`` rewrites it, then regenerate the types)."""
    app = init(settings.load({}, data_dir=str(tmp_path), api_token="t"))
    served = json.dumps(app[OPENAPI_DOC], indent=2, sort_keys=True) + "\n"
    assert_golden(WEB / "src" / "api" / "openapi.json", served, update_golden)


@pytest.mark.build
def test_the_committed_typescript_types_are_generated_from_it(tmp_path: Path) -> None:
    ensure_built()  # node_modules with openapi-typescript
    script = json.loads((WEB / "package.json").read_text())["scripts"]["gen:api"]
    argv = shlex.split(script.replace("src/api/schema.d.ts", str(tmp_path / "schema.d.ts")))
    result = subprocess.run(["npx", "--no-install", *argv], cwd=WEB, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    fresh = (tmp_path / "schema.d.ts").read_text()
    committed = (WEB / "src" / "api" / "schema.d.ts").read_text()
    assert committed == fresh, f"web/src/api/schema.d.ts is stale: run {REGENERATE}"
