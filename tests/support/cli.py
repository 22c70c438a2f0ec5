"""The real ``lq`` console script as a subprocess, and a slow local file server for progress."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

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

    async def __call__(self, *args: str, timeout_s: float = 60.0, env: dict[str, str] | None = None,
                       input_text: str | None = None) -> Result:
        """``input_text``: typed on stdin, with no controlling terminal (a new session), so a
        password prompt (getpass) reads it as from a pipe in a script."""
        process = await asyncio.create_subprocess_exec(
            LQ, *args, env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL if input_text is None else subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=input_text is not None,
        )
        data = None if input_text is None else input_text.encode()
        try:
            out, err = await asyncio.wait_for(process.communicate(data), timeout_s)
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


class SlowFiles(BaseHTTPRequestHandler):
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
