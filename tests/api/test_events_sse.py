"""GET /v1/events: SSE frames from the events stream, filtered, replayed and resumed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from limiquantix.common.events import VmGuestReady, VmStateChanged, event_encoder, event_subject
from limiquantix.common.vms import GuestInfo, VmState
from tests.api.conftest import Gateway
from tests.flows import sse_events

Frame = tuple[str, str, dict[str, Any]]


def frames(gw: Gateway, query: str = "", headers: dict[str, str] | None = None
           ) -> AsyncIterator[Frame]:
    """The SSE frames of GET /v1/events, parsed as any client would (tests/flows.py)."""
    return sse_events(gw.client, query, headers={**gw.auth, **(headers or {})})


async def take(stream: AsyncIterator[Frame], n: int) -> list[Frame]:
    out: list[Frame] = []
    async for frame in stream:
        out.append(frame)
        if len(out) == n:
            break
    return out


async def publish_state(gw: Gateway, vm_id: str, state: VmState) -> None:
    event = VmStateChanged(vm_id=vm_id, state=state)
    await gw.js.publish(event_subject(event), event_encoder.encode(event))


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
    await asyncio.sleep(0.3)  # the consumer is in place
    await publish_state(gw, "vm-new", VmState.RUNNING)
    (frame,) = await asyncio.wait_for(reader, 10)
    assert frame[2]["vm_id"] == "vm-new" and frame[0] == "2"


async def test_the_vm_filter_accepts_a_name(gw: Gateway) -> None:
    await gw.heartbeat("node-a")
    async with gw.client.post("/v1/vms", json={"name": "named", "image": "/i.qcow2"},
                              headers=gw.auth) as response:
        vm = await response.json()
    got = await asyncio.wait_for(take(frames(gw, "?vm=named&since=60"), 1), 10)
    assert got[0][2]["vm_id"] == vm["id"] and got[0][2]["state"] == "pending"


async def test_bad_parameters_are_problems(gw: Gateway) -> None:
    for query, status in (("?since=yesterday", 422), ("?last_event_id=x", 422),
                          ("?vm=a.b", 422), ("?since=-5", 422)):
        async with gw.client.get(f"/v1/events{query}", headers=gw.auth) as response:
            assert response.status == status, query
            assert response.content_type == "application/problem+json"


async def test_the_consumer_is_removed_when_the_client_disconnects(gw: Gateway) -> None:
    from limiquantix.common import subjects

    reader = asyncio.create_task(take(frames(gw), 10))
    await asyncio.sleep(0.3)
    assert (await gw.js.stream_info(subjects.EVENTS_STREAM)).state.consumer_count == 1
    reader.cancel()
    for _ in range(50):  # the writer notices the closed transport within its poll interval
        await asyncio.sleep(0.1)
        if (await gw.js.stream_info(subjects.EVENTS_STREAM)).state.consumer_count == 0:
            break
    assert (await gw.js.stream_info(subjects.EVENTS_STREAM)).state.consumer_count == 0
