"""Run inside a private network namespace (``unshare -rn``): a fake cloud metadata service on
169.254.169.254:80, a real nats-server and the real image library, then imports aimed at the
metadata service, directly and through a redirect. Prints a JSON report.

Only ever started by test_outbound.py through ``unshare -rn``: the address exists on the
namespace's own loopback and nowhere else.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import nats
from aiohttp import web

from limiquantix.common.errors import RemoteError
from limiquantix.common.images import CreateImageRequest
from limiquantix.common.nats_server import NatsServer, free_port
from limiquantix.common.outbound import OutboundRefused, client_session, fetch
from limiquantix.common.settings import load
from limiquantix.image_library.client import ImageLibraryClient
from limiquantix.image_library.importer import import_policy
from tests.support.images import Library

METADATA = "169.254.169.254"
CREDS_PATH = "/latest/meta-data/iam/security-credentials/role"
SECRET = "AKIA-FAKE-CREDENTIALS"
PUBLIC = "127.0.0.2"  # the "public" server of the test: allowed, redirects to the metadata


async def _serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def _through_the_library(report: dict[str, Any], redirect_url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with NatsServer(Path(tmp) / "nats") as server:
            library = Library(Path(tmp) / "library", server.url,
                              import_allowed_networks="127.0.0.0/8")
            await library.start()
            nc = await nats.connect(server.url)
            try:
                client = ImageLibraryClient(nc, timeout_s=10)
                try:
                    await client.import_image(CreateImageRequest(
                        source_url=f"http://{METADATA}{CREDS_PATH}"))
                    report["import direct"] = "accepted"
                except RemoteError as exc:
                    report["import direct"] = f"refused: {exc.reply.code}"
                record = await client.import_image(CreateImageRequest(
                    source_url=redirect_url, name="bounce"))
                deadline = time.monotonic() + 20
                while (record := await client.get(record.id)).state not in ("active", "error"):
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)
                report["import via redirect"] = f"{record.state}: {record.error}"
            finally:
                await nc.close()
                await library.stop()


async def main() -> dict[str, Any]:
    for command in (["ip", "link", "set", "lo", "up"],
                    ["ip", "addr", "add", f"{METADATA}/32", "dev", "lo"]):
        subprocess.run(command, check=True)
    hits: list[str] = []

    async def creds(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text=SECRET)

    async def bounce(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://{METADATA}{CREDS_PATH}")

    metadata_app = web.Application()
    metadata_app.router.add_get("/{tail:.*}", creds)
    redirect_app = web.Application()
    redirect_app.router.add_get("/disk.qcow2", bounce)
    redirect_port = free_port()
    runners = [await _serve(metadata_app, METADATA, 80),
               await _serve(redirect_app, PUBLIC, redirect_port)]
    report: dict[str, Any] = {}
    try:
        # The target is live: a plain client reads the "credentials".
        async with aiohttp.ClientSession() as plain, \
                plain.get(f"http://{METADATA}{CREDS_PATH}") as response:
            report["plain client read the secret"] = SECRET in await response.text()
        # The policy's own client, the way the importer uses it; loopback origins allowed as in
        # the tests, the metadata range must stay refused regardless (also IPv4-mapped).
        policy = import_policy(load({}, import_allowed_networks="127.0.0.0/8"))
        async with client_session(policy) as session:
            for url in (f"http://{METADATA}{CREDS_PATH}",
                        f"http://[::ffff:{METADATA}]{CREDS_PATH}"):
                try:
                    async with fetch(session, policy, url) as response:
                        report[f"policy client {url}"] = f"fetched {response.status}"
                except OutboundRefused as exc:
                    report[f"policy client {url}"] = f"refused: {exc.code}"
        await _through_the_library(report, f"http://{PUBLIC}:{redirect_port}/disk.qcow2")
        report["metadata requests"] = len(hits)
    finally:
        for runner in runners:
            await runner.cleanup()
    return report


if __name__ == "__main__":
    result = asyncio.run(main())
    print("\nREPORT " + json.dumps(result))  # the last line; the library logs before it
