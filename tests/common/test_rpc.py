"""common.rpc on a real nats-server: typed replies, errors in nats.py micro's headers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from limiquantix.common import nats_auth, rpc, subjects
from limiquantix.common.errors import NotFound, RemoteError, Unavailable
from limiquantix.common.images import ImageRef
from limiquantix.common.nats_server import NatsServer

SUBJECT = subjects.image_rpc("get")


async def until_answered(asker: Client) -> None:
    """Poll (deadline 5 s) until the responder answers: measured here, about 1 first request
    in 30 right after a fresh responder subscribed and flushed gets 503 no-responders from
    nats-server, plain nats-py included (not this module's doing)."""
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        try:
            await asker.request(SUBJECT, b"{}", timeout=1)
            return
        except nats.errors.NoRespondersError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


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
        return ImageRef(id=rpc.decode(msg.data, ImageRef).id + "-seen")

    sub = await rpc.serve(server, SUBJECT, echo, queue="q")
    await server.flush()
    await until_answered(asker)
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
    await until_answered(asker)
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
    await until_answered(asker)
    with pytest.raises(RemoteError) as raised:
        await rpc.request(asker, SUBJECT, ImageRef(id="x"), ImageRef, timeout_s=5)
    error = raised.value.to_reply()
    assert (error.code, error.status) == ("internal", 500)
    assert "secret detail" not in error.message and "the test service" in error.message


async def test_nobody_answering_is_unavailable(clients: tuple[Client, Client]) -> None:
    asker, _ = clients
    with pytest.raises(Unavailable):
        await rpc.request(asker, SUBJECT, ImageRef(id="x"), ImageRef, timeout_s=0.5)


async def test_a_body_that_is_not_the_request_type_is_answered_invalid_request(
        clients: tuple[Client, Client]) -> None:
    asker, server = clients

    async def echo(msg: Msg) -> ImageRef:
        return rpc.decode(msg.data, ImageRef)

    await rpc.serve(server, SUBJECT, echo)
    await server.flush()
    await until_answered(asker)
    for body in (b"not json", b'{"id": 5}'):
        reply = await asker.request(SUBJECT, body, timeout=5)
        assert reply.headers is not None and reply.headers[rpc.ERROR_CODE_HEADER] == "422"
        error = msgspec.json.decode(reply.data)
        assert error["code"] == "invalid_request" and "ImageRef" in error["message"]
