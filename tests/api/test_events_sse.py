"""GET /v1/events: SSE frames from the events stream, filtered, replayed and resumed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from nats.js import JetStreamContext

from limiquantix.common import subjects
from limiquantix.common.events import VmGuestReady, VmStateChanged, event_encoder, event_subject
from limiquantix.common.nats_server import NatsServer, free_port
from limiquantix.common.process import stop_process
from limiquantix.common.vms import GuestInfo, VmState
from tests.support.api_gateway import TOKEN, Gateway
from tests.support.flows import sse_events
from tests.support.waits import eventually

Frame = tuple[str, str, dict[str, Any]]


def frames(gw: Gateway, query: str = "", headers: dict[str, str] | None = None
           ) -> AsyncIterator[Frame]:
    """The SSE frames of GET /v1/events, parsed as any client would (tests/support/flows.py)."""
    return sse_events(gw.client, query, headers={**gw.auth, **(headers or {})})


async def take(stream: AsyncIterator[Frame], n: int) -> list[Frame]:
    """The first ``n`` frames; the stream is closed after them, or when cancelled (a reader left
    open keeps its server handler streaming until the app's shutdown timeout)."""
    out: list[Frame] = []
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        async for frame in stream:
            out.append(frame)
            if len(out) == n:
                break
    return out


async def publish_state(gw: Gateway, vm_id: str, state: VmState) -> None:
    event = VmStateChanged(vm_id=vm_id, state=state)
    await gw.js.publish(event_subject(event), event_encoder.encode(event))


async def streaming(gw: Gateway, n: int = 1) -> None:
    """Wait until ``n`` streams have their JetStream consumer: from then on they get every new
    event."""
    async def reached() -> bool:
        return await _consumers(gw.js) >= n

    await eventually(reached, what=f"{n} SSE consumer(s)")


async def test_replay_since_with_vm_filter_gives_ids_types_and_data(gw: Gateway) -> None:
    await publish_state(gw, "vm-one", VmState.CREATING)
    await publish_state(gw, "vm-two", VmState.CREATING)
    guest = VmGuestReady(vm_id="vm-one", guest=GuestInfo(boot_seconds=1.5))
    await gw.js.publish(event_subject(guest), event_encoder.encode(guest))
    got = await asyncio.wait_for(take(frames(gw, "?vm=vm-one&since=600"), 2), 10)
    assert [(kind, data["vm_id"]) for _, kind, data in got] == [
        ("vm.state_changed", "vm-one"), ("vm.guest_ready", "vm-one")]
    assert [int(i) for i, _, _ in got] == [1, 3]  # the stream sequences


async def test_last_event_id_resumes_after_that_event(gw: Gateway) -> None:
    for state in (VmState.CREATING, VmState.STARTING, VmState.RUNNING):
        await publish_state(gw, "vm-one", state)
    got = await asyncio.wait_for(take(frames(gw, headers={"Last-Event-ID": "1"}), 2), 10)
    assert [(i, data["state"]) for i, _, data in got] == [("2", "starting"), ("3", "running")]
    got = await asyncio.wait_for(take(frames(gw, "?last_event_id=2"), 1), 10)
    assert got[0][0] == "3"


async def test_without_since_only_new_events_arrive_live(gw: Gateway) -> None:
    await publish_state(gw, "vm-old", VmState.CREATING)
    stream = frames(gw)
    reader = asyncio.create_task(take(stream, 1))
    await streaming(gw)
    await publish_state(gw, "vm-new", VmState.RUNNING)
    (frame,) = await asyncio.wait_for(reader, 10)
    assert frame[2]["vm_id"] == "vm-new" and frame[0] == "2"


async def test_live_events_reach_an_idle_stream_at_once(gw: Gateway) -> None:
    """A pulled stream must not hold a live event back until a batch fills or a poll ends
    (measured: ~2 ms from publish to the client)."""
    arrived: list[float] = []

    async def read() -> None:
        async for _ in frames(gw):
            arrived.append(time.monotonic())
            if len(arrived) == 5:
                return

    reader = asyncio.create_task(read())
    await streaming(gw)
    sent = []
    for n in range(5):
        await asyncio.sleep(0.25)  # deliberate: each event reaches a stream idle for a while
        sent.append(time.monotonic())
        await publish_state(gw, f"vm-{n}", VmState.RUNNING)
    await asyncio.wait_for(reader, 10)
    delays = [a - s for a, s in zip(arrived, sent, strict=True)]
    assert max(delays) < 0.5, delays  # ~2 ms measured; the poll interval is 1 s


async def test_the_vm_filter_accepts_a_name(gw: Gateway) -> None:
    await gw.heartbeat("node-a")
    async with gw.client.post("/v1/vms", json={"name": "named", "image": "/i.qcow2"},
                              headers=gw.auth) as response:
        vm = await response.json()
    got = await asyncio.wait_for(take(frames(gw, "?vm=named&since=60"), 1), 10)
    assert got[0][2]["vm_id"] == vm["id"] and got[0][2]["state"] == "pending"


async def test_bad_parameters_are_problems(gw: Gateway) -> None:
    for query, status in (("?since=yesterday", 422), ("?last_event_id=x", 422),
                          ("?vm=a.b", 422), ("?since=-5", 422), ("?since=nan", 422),
                          ("?since=inf", 422), ("?since=1e30", 422),
                          ("?last_event_id=" + "9" * 30, 422)):
        async with gw.client.get(f"/v1/events{query}", headers=gw.auth) as response:
            assert response.status == status, query
            assert response.content_type == "application/problem+json"


async def test_extreme_but_valid_times_open_a_stream(gw: Gateway) -> None:
    """The far past replays everything; the far future waits for events: never a 5xx."""
    for query in ("?since=0001-01-01T00:00:00Z", "?since=9999-12-31T23:59:59Z",
                  "?last_event_id=9223372036854775807", "?since=3000000000"):
        async with gw.client.get(f"/v1/events{query}", headers=gw.auth) as response:
            assert response.status == 200, (query, await response.text())


async def test_the_consumer_is_removed_when_the_client_disconnects(gw: Gateway) -> None:
    from limiquantix.common import subjects

    reader = asyncio.create_task(take(frames(gw), 10))
    await streaming(gw)
    assert (await gw.js.stream_info(subjects.EVENTS_STREAM)).state.consumer_count == 1
    reader.cancel()
    for _ in range(50):  # the writer notices the closed transport within its poll interval
        await asyncio.sleep(0.1)
        if (await gw.js.stream_info(subjects.EVENTS_STREAM)).state.consumer_count == 0:
            break
    assert (await gw.js.stream_info(subjects.EVENTS_STREAM)).state.consumer_count == 0


# --- bounded streams (issue 10 row 8): idle readers, the client cap, resuming after a drop ---

IDLE_READERS = 40
EVENTS = 4000
PAYLOAD = 1024
# A reader costs the gateway one pulled batch (128 events: ~0.13 MiB of data, about as much
# again in message objects) and aiohttp's write buffer (64 KiB high-water), and the allocator
# keeps some of what it freed: measured 27-31 MiB for 40 readers. Bound: 64 MiB, twice that.
# Unbounded (before), every reader held every event: 40 x 4000 x ~2 KiB = ~320 MiB.
RSS_BOUND_MIB = 64
# LQ_SSE_WRITE_TIMEOUT_S for the process (10 s by default): a stalled reader is dropped sooner.
WRITE_TIMEOUT_S = 3.0


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@contextlib.asynccontextmanager
async def api_process(nats_server: NatsServer, tmp_path: Path, **env: str
                      ) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """lq-api as users run it (its own process, so its RSS is its own)."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LQ_")}
    environ.update(LQ_NATS_URL=nats_server.url, LQ_DATA_DIR=str(tmp_path / "api-proc"),
                   LQ_API_PORT=str(port), LQ_API_TOKEN=TOKEN, LQ_LOG_FORMAT="json", **env)
    if nats_server.auth:
        environ["LQ_NATS_CREDS"] = str(nats_server.creds_for("api"))
    log = (tmp_path / "api-proc.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "lq-api"), env=environ, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(url + "/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert process.returncode is None and time.monotonic() < deadline, \
                    (tmp_path / "api-proc.log").read_text()[-3000:]
                await asyncio.sleep(0.1)
        yield process, url
    finally:
        await stop_process(process, 20)
        log.close()


async def idle_reader(port: int, query: str = "") -> socket.socket:
    """A client that asks for the stream and then never reads (small receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    sock.sendall(f"GET /v1/events{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"Authorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n".encode())
    return sock


async def opened(sock: socket.socket) -> socket.socket:
    """``sock`` once its stream is open (the gateway wrote ``: connected``)."""
    got = b""
    deadline = time.monotonic() + 20
    while b": connected" not in got:
        assert time.monotonic() < deadline, got
        try:
            got += sock.recv(4096)
        except BlockingIOError:
            await asyncio.sleep(0.05)
    return sock


def dechunk(body: bytes) -> bytes:
    """The data of an HTTP/1.1 chunked body, as far as it arrived."""
    out, pos = [], 0
    while (end := body.find(b"\r\n", pos)) != -1:
        size = int(body[pos:end].split(b";")[0], 16)
        out.append(body[end + 2:end + 2 + size])
        pos = end + 2 + size + 2
        if size == 0 or pos > len(body):
            break
    return b"".join(out)


def complete_ids(raw: bytes) -> list[int]:
    """Ids of the complete SSE frames in what a reader received before it was dropped."""
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"chunked" in head.lower()
    frames_ = dechunk(body).split(b"\n\n")[:-1]  # the last piece may be cut short
    return [int(f.split(b"\n", 1)[0][4:]) for f in frames_ if f.startswith(b"id: ")]


async def _consumers(js: JetStreamContext) -> int:
    return (await js.stream_info(subjects.EVENTS_STREAM)).state.consumer_count or 0


async def test_idle_readers_are_dropped_within_a_memory_bound_and_resume_without_loss(
    gw: Gateway, nats_server: NatsServer, tmp_path: Path,
) -> None:
    async with api_process(nats_server, tmp_path,
                           LQ_SSE_WRITE_TIMEOUT_S=str(WRITE_TIMEOUT_S)) as (process, url):
        port = int(url.rsplit(":", 1)[1])
        baseline = _rss_mib(process.pid)
        others = await _consumers(gw.js)  # the API's own (e.g. its dead-letter watch)
        vm_id = str(uuid.uuid4())
        readers = [await idle_reader(port, f"?vm={vm_id}") for _ in range(IDLE_READERS)]
        deadline = time.monotonic() + 20
        while await _consumers(gw.js) < others + IDLE_READERS:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        payload = {"pad": "x" * PAYLOAD}
        peak = baseline
        published: list[int] = []
        for start in range(0, EVENTS, 200):
            acks = await asyncio.gather(*(gw.js.publish(
                subjects.vm_event(vm_id, "note"), json.dumps({"n": n, **payload}).encode())
                for n in range(start, start + 200)))
            published += sorted(ack.seq for ack in acks)
            peak = max(peak, _rss_mib(process.pid))
        # The API drops the readers that take nothing (at its write timeout); memory stays
        # within the bound meanwhile.
        deadline = time.monotonic() + WRITE_TIMEOUT_S + 30
        while await _consumers(gw.js) > others:
            peak = max(peak, _rss_mib(process.pid))
            if time.monotonic() > deadline:
                infos = await gw.js.consumers_info(subjects.EVENTS_STREAM)
                raise AssertionError([(i.name, i.delivered, i.num_pending, i.num_ack_pending,
                                       i.config.deliver_subject, i.push_bound) for i in infos])
            await asyncio.sleep(0.1)
        peak = max(peak, _rss_mib(process.pid))
        print(f"RSS baseline {baseline:.1f} MiB, peak {peak:.1f} MiB with {IDLE_READERS} idle "
              f"readers and {EVENTS} events of {PAYLOAD} B")
        assert peak - baseline < RSS_BOUND_MIB, (baseline, peak)
        # A dropped reader resumes from the last complete event it got and loses nothing.
        sock = readers[0]
        sock.setblocking(True)
        received = b""
        while chunk := sock.recv(1 << 16):
            received += chunk
        for reader in readers:
            reader.close()
        seen = complete_ids(received)
        assert seen and seen == published[:len(seen)]
        assert len(seen) < EVENTS  # it was dropped before the end
        rest: list[int] = []
        async with aiohttp.ClientSession(base_url=url) as http:
            async for event_id, _, _ in sse_events(
                http, f"?vm={vm_id}", headers={"Authorization": f"Bearer {TOKEN}",
                               "Last-Event-ID": str(seen[-1])}):
                rest.append(int(event_id))
                if len(seen) + len(rest) == EVENTS:
                    break
        assert seen + rest == published


async def test_streams_past_the_cap_get_503_with_retry_after(
    gw: Gateway, nats_server: NatsServer, tmp_path: Path,
) -> None:
    async with api_process(nats_server, tmp_path, LQ_SSE_MAX_CLIENTS="3") as (_, url):
        port = int(url.rsplit(":", 1)[1])
        # Streams of every event share one consumer (the tail): each reader is open once
        # the gateway sent it the stream's first bytes.
        readers = [await opened(await idle_reader(port)) for _ in range(3)]
        async with aiohttp.ClientSession(base_url=url) as http, http.get(
            "/v1/events", headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response:
            assert response.status == 503
            assert response.headers["Retry-After"].isdigit()
            assert (await response.json(content_type=None))["code"] == "too_many_streams"
        readers.pop().close()  # one leaves: a slot is free again
        deadline = time.monotonic() + 10
        async with aiohttp.ClientSession(base_url=url) as http:
            while True:
                async with http.get("/v1/events", headers={
                        "Authorization": f"Bearer {TOKEN}"}) as response:
                    if response.status == 200:
                        break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
        for reader in readers:
            reader.close()


async def test_since_a_time_in_the_future_replays_nothing_old(gw: Gateway) -> None:
    """``since`` after now is 'from then on', never 'from the beginning' (issue 11 #14)."""
    await publish_state(gw, "vm-old", VmState.CREATING)
    stream = frames(gw, "?since=2999-01-01T00:00:00Z")
    reader = asyncio.create_task(take(stream, 1))
    done, _ = await asyncio.wait({reader}, timeout=1.0)
    assert not done, "an old event was replayed for a future 'since'"
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader


# --- the tail: streams of every event share one consumer per gateway -------------------------

async def test_streams_of_every_event_share_one_consumer_and_each_gets_every_event(
    gw: Gateway,
) -> None:
    others = await _consumers(gw.js)
    readers = [asyncio.create_task(take(frames(gw), 30)) for _ in range(5)]
    await streaming(gw, others + 1)
    await asyncio.sleep(0.5)  # every reader's stream open (they share the consumer counted)
    for n in range(30):
        await publish_state(gw, f"vm-{n}", VmState.RUNNING)
    got = await asyncio.wait_for(asyncio.gather(*readers), 20)
    assert await _consumers(gw.js) <= others + 1
    for frames_ in got:
        assert [data["vm_id"] for _, _, data in frames_] == [f"vm-{n}" for n in range(30)]
        ids = [int(i) for i, _, _ in frames_]
        assert ids == list(range(ids[0], ids[0] + 30))


async def test_a_stream_behind_the_tail_replays_from_its_own_consumer_then_follows_live(
    gw: Gateway, monkeypatch: Any,
) -> None:
    from limiquantix.api import events_sse
    monkeypatch.setattr(events_sse, "TAIL_KEEP", 4)  # the tail keeps 4-8 events
    others = await _consumers(gw.js)
    live = asyncio.create_task(take(frames(gw), 60))
    await streaming(gw, others + 1)
    for n in range(20):  # the tail drops the first ones
        await publish_state(gw, f"vm-{n}", VmState.CREATING)
    # Resumed from the first event: behind the tail, so its own consumer replays, then the
    # stream moves to the tail (its consumer goes) and follows live events.
    resumed = asyncio.create_task(take(frames(gw, headers={"Last-Event-ID": "0"}), 40))

    async def consumers_are(n: int) -> bool:
        return await _consumers(gw.js) == n

    # (its own consumer lives at least one empty pull, POLL_S, after the replay)
    await eventually(lambda: consumers_are(others + 2), what="the resumed stream's own consumer")
    await eventually(lambda: consumers_are(others + 1), timeout_s=10,
                     what="the resumed stream back on the shared consumer")
    for n in range(20, 40):
        await publish_state(gw, f"vm-{n}", VmState.RUNNING)
    got = await asyncio.wait_for(resumed, 20)
    assert [int(i) for i, _, _ in got] == list(range(1, 41))
    assert [data["vm_id"] for _, _, data in got] == [f"vm-{n}" for n in range(40)]
    live.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await live
