"""Both clients' event streams reconnect after a drop with Last-Event-ID: nothing lost or
repeated; an error answer is the typed problem. The server is a real aiohttp app that drops
every connection after three events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from limiquantix.client import AsyncClient, Client, NotFound

TOTAL = 7


async def events(request: web.Request) -> web.StreamResponse:
    if request.query.get("vm") == "bad":
        raise web.HTTPNotFound(
            text='{"code": "vm_not_found", "detail": "no VM bad", "hint": "List VMs."}',
            content_type="application/problem+json")
    last = request.headers.get("Last-Event-ID", "")
    request.app[SEEN].append(last)
    start = int(last) + 1 if last else 1
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"retry: 50\n: connected\n\n")
    for seq in range(start, min(start + 3, TOTAL + 1)):
        await response.write(f"id: {seq}\nevent: test\ndata: {seq}\n\n".encode())
    return response  # the drop: the connection ends after three events


SEEN = web.AppKey("seen", list[str])


@pytest.fixture
async def sse_url() -> AsyncIterator[tuple[str, list[str]]]:
    app = web.Application()
    app[SEEN] = []
    app.router.add_get("/v1/events", events)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/"), app[SEEN]


async def test_the_async_stream_resumes_after_each_drop_without_loss_or_repeat(
        sse_url: tuple[str, list[str]]) -> None:
    url, seen = sse_url
    async with AsyncClient(url, token="t") as client, client.events.stream() as stream:
        got = []
        for _ in range(TOTAL):
            message = await stream.get(timeout_s=5)
            assert message is not None
            got.append(message.data)
    assert got == [str(n) for n in range(1, TOTAL + 1)]
    assert seen[:3] == ["", "3", "6"]


async def test_an_error_answer_to_the_async_stream_is_the_typed_problem(
        sse_url: tuple[str, list[str]]) -> None:
    url, _ = sse_url
    async with AsyncClient(url, token="t") as client:
        with pytest.raises(NotFound) as raised:
            async with client.events.stream(vm="bad"):
                pass
    assert (raised.value.code, raised.value.hint) == ("vm_not_found", "List VMs.")


async def test_the_sync_stream_opened_under_with_reads_one_connection(
        sse_url: tuple[str, list[str]]) -> None:
    url, seen = sse_url
    client = Client(url, token="t")

    def read_all() -> list[str]:
        with client.events.stream() as stream:
            out = []
            for _ in range(TOTAL):
                message = stream.get(timeout_s=5)
                assert message is not None
                out.append(message.data)
            return out

    got = await asyncio.to_thread(read_all)  # the server runs on this test's loop
    assert got == [str(n) for n in range(1, TOTAL + 1)]
    assert seen[:3] == ["", "3", "6"]
