"""Fixtures for running the real ``lq`` console script against the real stack."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from limiquantix.local.stack import Stack

LQ = str(Path(sys.executable).parent / "lq")


@dataclass
class Result:
    code: int
    out: str
    err: str


class Lq:
    """Runs ``lq`` as a subprocess with a given environment (URL and token)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    async def __call__(self, *args: str, timeout_s: float = 60.0, env: dict[str, str] | None = None
                       ) -> Result:
        process = await asyncio.create_subprocess_exec(
            LQ, *args, env={**self.env, **(env or {})}, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())


def base_env(tmp_path: Path) -> dict[str, str]:
    """The caller's environment minus any LQ_* (tests choose their own), HOME in tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LQ_")}
    env["HOME"] = str(tmp_path / "home")
    env["XDG_STATE_HOME"] = str(tmp_path / "home" / ".local" / "state")
    return env


@pytest.fixture
def lq(stack: Stack, tmp_path: Path) -> Lq:
    """``lq`` pointed at the shared ``stack`` fixture (tests/conftest.py) by LQ_URL/LQ_API_TOKEN."""
    env = base_env(tmp_path)
    env.update(LQ_URL=stack.api_url, LQ_API_TOKEN=stack.api_token)
    return Lq(env)


class _Files(BaseHTTPRequestHandler):
    """Serves files from ``root`` at ``rate`` bytes/s (so progress has time to show)."""

    root: Path
    rate: float

    def do_GET(self) -> None:
        path = self.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        chunk = 256 * 1024
        started = time.monotonic()
        try:
            for offset in range(0, len(data), chunk):
                self.wfile.write(data[offset:offset + chunk])
                ahead = (offset + chunk) / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, directory) of a slow local HTTP server: 8 MiB/s."""
    root = tmp_path / "www"
    root.mkdir()
    handler = type("Files", (_Files,), {"root": root, "rate": 8 * 1024 * 1024})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def make_data_qcow2(path: Path, mib: int) -> Path:
    """A qcow2 (made by qemu-img) holding ``mib`` MiB of incompressible data."""
    raw = path.with_suffix(".raw")
    raw.write_bytes(os.urandom(mib * 1024 * 1024))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)],
                   check=True, timeout=60)
    raw.unlink()
    path.chmod(0o644)
    return path
