"""Fixtures for running the real ``lq`` console script against the real stack."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from limiquantix.local.stack import Stack
from tests.support.cli import Lq, SlowFiles, base_env


@pytest.fixture
def lq(stack: Stack, tmp_path: Path) -> Lq:
    """``lq`` pointed at the shared ``stack`` fixture (tests/conftest.py) by LQ_URL/LQ_API_TOKEN."""
    env = base_env(tmp_path)
    env.update(LQ_URL=stack.api_url, LQ_API_TOKEN=stack.api_token)
    return Lq(env)


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, directory) of a slow local HTTP server: 8 MiB/s."""
    root = tmp_path / "www"
    root.mkdir()
    handler = type("Files", (SlowFiles,), {"root": root, "rate": 8 * 1024 * 1024})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()
