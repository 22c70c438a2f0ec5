"""Run inside a private network namespace (``unshare -rn``): a fake metadata service on
169.254.169.254:80, then the import policy's client pointed at it. Prints a JSON report.

Only ever started by test_outbound.py through ``unshare -rn``: the address exists on the
namespace's own loopback and nowhere else.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiohttp
from aiohttp import web

from limiquantix.common.outbound import OutboundRefused, client_session, fetch
from limiquantix.common.settings import load
from limiquantix.image_library.importer import import_policy

METADATA = "169.254.169.254"
SECRET = "AKIA-FAKE-CREDENTIALS"


async def main() -> dict[str, object]:
    for command in (["ip", "link", "set", "lo", "up"],
                    ["ip", "addr", "add", f"{METADATA}/32", "dev", "lo"]):
        subprocess.run(command, check=True)
    hits: list[str] = []

    async def creds(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text=SECRET)

    app = web.Application()
    app.router.add_get("/{tail:.*}", creds)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, METADATA, 80).start()
    report: dict[str, object] = {}
    try:
        # The target is live: a plain client reads the "credentials".
        async with aiohttp.ClientSession() as plain, \
                plain.get(f"http://{METADATA}/latest/meta-data/iam") as response:
            report["plain_client_read"] = SECRET in await response.text()
        # Tests allow loopback origins; the metadata range must stay refused regardless.
        policy = import_policy(load({}, import_allowed_networks="127.0.0.0/8"))
        async with client_session(policy) as session:
            for url in (f"http://{METADATA}/latest/meta-data/iam",
                        "http://[::ffff:169.254.169.254]/latest/meta-data/iam"):
                try:
                    async with fetch(session, policy, url) as response:
                        report[url] = f"fetched {response.status}"
                except OutboundRefused as exc:
                    report[url] = f"refused: {exc.code}: {exc.message}"
        report["hits_after_plain"] = len(hits)
    finally:
        await runner.cleanup()
    return report


if __name__ == "__main__":
    json.dump(asyncio.run(main()), sys.stdout)
