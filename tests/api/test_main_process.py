"""``lq-api`` as a process: serves, stays up, and exits 0 promptly on SIGTERM even with an open
event stream."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp

from limiquantix.common.nats_server import NatsServer, free_port


async def test_lq_api_serves_then_exits_0_on_sigterm_with_an_sse_client(
        nats_server: NatsServer, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "LQ_NATS_URL": nats_server.url, "LQ_API_PORT": str(port),
           "LQ_NATS_CREDS": str(nats_server.creds_for("api")),
           "LQ_DATA_DIR": str(tmp_path / "data"), "LQ_LOG_FORMAT": "json"}
    env.pop("LQ_API_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "lq-api"), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"{url}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
            token = (tmp_path / "data" / "api-token").read_text().strip()
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{url}/v1/events", headers=headers) as stream:
                assert stream.status == 200
                await stream.content.readline()
                began = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                rest = await asyncio.wait_for(stream.content.read(), 10)  # the server ends it
                assert b"event:" not in rest
            code = await asyncio.wait_for(proc.wait(), 10)
            assert code == 0
            assert time.monotonic() - began < 5
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    output = (await proc.stdout.read()).decode() if proc.stdout else ""
    assert token not in output  # the token is never logged
