"""common.rpc on a real nats-server: typed replies, errors in nats.py micro's headers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from limiquantix.common import nats_auth, rpc, subjects
from limiquantix.common.errors import NotFound, RemoteError, Unavailable
from limiquantix.common.images import ImageRef
from limiquantix.common.nats_server import NatsServer

SUBJECT = subjects.image_rpc("get")


@pytest.fixture
async def clients(nats_server: NatsServer) -> AsyncIterator[tuple[Client, Client]]:
    """(asker, server): the gateway's identity asks, the image library's answers."""
    asker = await nats.connect(**nats_server.connect_options(nats_auth.API))
    server = await nats.connect(**nats_server.connect_options(nats_auth.IMAGE_LIBRARY))
    yield asker, server
    await asker.drain()
    await server.drain()


async def test_a_reply_is_decoded_as_its_type(clients: tuple[Client, Client]) -> None:
    asker, server = clients

    async def echo(msg: Msg) -> ImageRef:
        return ImageRef(id=msgspec.json.decode(msg.data, type=ImageRef).id + "-seen")

    sub = await rpc.serve(server, SUBJECT, echo, queue="q")
    await server.flush()
    reply = await rpc.request(asker, SUBJECT, ImageRef(id="debian"), ImageRef, timeout_s=5)
    assert reply == ImageRef(id="debian-seen")
    await sub.unsubscribe()


async def test_an_error_travels_in_micro_headers_and_comes_back_typed(
        clients: tuple[Client, Client]) -> None:
    asker, server = clients

    async def missing(msg: Msg) -> ImageRef:
        raise NotFound("no image\nnamed x", hint="List images first.", image_id="x")

    await rpc.serve(server, SUBJECT, missing)
    await server.flush()
    raw = await asker.request(SUBJECT, b"{}", timeout=5)
    assert raw.headers is not None
    assert raw.headers[rpc.ERROR_CODE_HEADER] == "404"
    assert raw.headers[rpc.ERROR_HEADER] == "no image named x"  # one header line
    with pytest.raises(RemoteError) as raised:
        await rpc.request(asker, SUBJECT, ImageRef(id="x"), ImageRef, timeout_s=5)
    error = raised.value.to_reply()
    assert (error.code, error.status, error.hint) == ("not_found", 404, "List images first.")
    assert error.details == {"image_id": "x"}


async def test_an_unexpected_failure_is_answered_internal_without_its_text(
        clients: tuple[Client, Client]) -> None:
    asker, server = clients

    async def broken(msg: Msg) -> ImageRef:
        raise KeyError("secret detail")

    await rpc.serve(server, SUBJECT, broken, what="the test service")
    await server.flush()
    with pytest.raises(RemoteError) as raised:
        await rpc.request(asker, SUBJECT, ImageRef(id="x"), ImageRef, timeout_s=5)
    error = raised.value.to_reply()
    assert (error.code, error.status) == ("internal", 500)
    assert "secret detail" not in error.message and "the test service" in error.message


async def test_nobody_answering_is_unavailable(clients: tuple[Client, Client]) -> None:
    asker, _ = clients
    with pytest.raises(Unavailable):
        await rpc.request(asker, SUBJECT, ImageRef(id="x"), ImageRef, timeout_s=0.5)
