"""Row 4 of issue 10: imports cannot be pointed into our own network (SSRF).

Real image library (in-process serve() on a real nats-server), real HTTP origins on loopback
addresses; 169.254.169.254 is bound on the loopback of a private network namespace only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import sys
from pathlib import Path

import pytest
from aiohttp import web

from limiquantix.common.errors import RemoteError
from limiquantix.common.images import CreateImageRequest
from limiquantix.common.nats_server import NatsServer, free_port
from limiquantix.common.outbound import OutboundPolicy, OutboundRefused, refusal
from limiquantix.image_library.client import ImageLibraryClient
from tests.support.images import Library, wait_image
from tests.support.origin import Origin
from tests.support.security import make_library
from tests.support.tcp_servers import tcp_server

ROOT = Path(__file__).resolve().parents[2]
# The "attacker's public server" in these tests: a loopback alias strict_library allows, so
# that 127.0.0.1 (where our services listen) stays refused like any internal address.
PUBLIC = "127.0.0.2"


async def _serve(app: web.Application, host: str) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, host, port).start()
    return runner, port


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "240.0.0.1", "::1", "fe80::1", "fd00:ec2::254", "fc00::1", "::",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "ff02::1",
])
def test_internal_addresses_are_refused_by_default(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert refusal(ip)
    with pytest.raises(OutboundRefused):
        OutboundPolicy().check_address(ip)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::1111", "8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    OutboundPolicy().check_address(ipaddress.ip_address(address))


def test_an_allowed_network_does_not_open_the_metadata_service_by_accident() -> None:
    policy = OutboundPolicy(allowed_networks=(ipaddress.ip_network("10.0.0.0/8"),))
    policy.check_address(ipaddress.ip_address("10.1.2.3"))
    with pytest.raises(OutboundRefused):
        policy.check_address(ipaddress.ip_address("169.254.169.254"))


async def test_import_from_loopback_is_refused_and_nothing_is_fetched(
    tmp_path: Path, nats_server: NatsServer, client: ImageLibraryClient, origin: Origin,
    disk: Path,
) -> None:
    library = make_library(tmp_path / "strict", nats_server, import_allowed_networks="")
    await library.start()
    try:
        for url in (origin.file_url("disk.qcow2"),
                    origin.file_url("disk.qcow2").replace("127.0.0.1", "localhost"),
                    origin.file_url("disk.qcow2").replace("127.0.0.1", "[::ffff:127.0.0.1]")):
            with pytest.raises(RemoteError) as caught:
                await client.import_image(CreateImageRequest(source_url=url))
            assert (caught.value.reply.code, caught.value.reply.status) == ("outbound_refused", 422)
        assert sum(origin.hits.values()) == 0
    finally:
        await library.stop()


@pytest.mark.parametrize("target_host", ["127.0.0.1", "localhost"])
async def test_a_redirect_to_loopback_is_refused(
    strict_library: Library, client: ImageLibraryClient, origin: Origin, disk: Path,
    target_host: str,
) -> None:
    """An allowed ("public") server redirecting into loopback: the hop is checked too."""
    inner = origin.file_url("disk.qcow2").replace("127.0.0.1", target_host)

    async def bounce(request: web.Request) -> web.Response:
        raise web.HTTPFound(inner)

    app = web.Application()
    app.router.add_get("/disk.qcow2", bounce)
    runner, port = await _serve(app, PUBLIC)
    try:
        record = await client.import_image(CreateImageRequest(
            source_url=f"http://{PUBLIC}:{port}/disk.qcow2", name="bounced"))
        failed = await wait_image(client, record.id, "active", "error")
    finally:
        await runner.cleanup()
    assert failed.state == "error"
    assert "outbound_refused" in failed.error
    assert sum(origin.hits.values()) == 0
    assert strict_library.leftovers(record.id) == []


async def test_credentials_in_the_url_are_refused_and_not_echoed(
    strict_library: Library, client: ImageLibraryClient,
) -> None:
    with pytest.raises(RemoteError) as caught:
        await client.import_image(CreateImageRequest(
            source_url=f"http://admin:hunter2@{PUBLIC}:9/disk.qcow2"))
    assert caught.value.reply.code == "outbound_refused"
    assert "hunter2" not in json.dumps(caught.value.reply.details) + caught.value.reply.message


async def test_a_non_http_peer_s_banner_does_not_leak_into_the_record(
    strict_library: Library, client: ImageLibraryClient,
) -> None:
    """What answers at the URL (NATS, SSH...) must not be readable back from the record."""
    banner = b'INFO {"server_id":"SECRET-BANNER-42","version":"2.10"}\r\n'
    async with tcp_server("greet", greeting=banner, host=PUBLIC) as peer:
        record = await client.import_image(CreateImageRequest(
            source_url=f"http://{PUBLIC}:{peer.port}/x.qcow2", name="banner"))
        failed = await wait_image(client, record.id, "active", "error")
    assert failed.state == "error" and "import_failed" in failed.error
    assert "SECRET-BANNER" not in failed.error and "server_id" not in failed.error


@pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("ip") is None,
                    reason="needs unshare and ip for a private network namespace")
async def test_the_metadata_address_is_refused_although_it_answers(tmp_path: Path) -> None:
    """169.254.169.254 bound on the loopback of a private namespace (``unshare -rn``), with a
    real nats-server and image library in it: a plain client reads the fake credentials there;
    an import of that URL is refused at once, an import redirected there ends in error, the
    policy's client refuses it in its IPv4-mapped form too, and the metadata service sees only
    the plain client's request."""
    process = await asyncio.create_subprocess_exec(
        "unshare", "-rn", sys.executable, "-m", "tests.security.metadata_probe",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()[-3000:]
    report = json.loads(out.decode().rsplit("\nREPORT ", 1)[1])
    assert report.pop("plain client read the secret") is True
    assert report.pop("metadata requests") == 1, report
    assert report.pop("import direct") == "refused: outbound_refused"
    via = report.pop("import via redirect")
    assert via.startswith("error: outbound_refused") and "169.254.169.254" in via, via
    assert report and all(v == "refused: outbound_refused" for v in report.values()), report
