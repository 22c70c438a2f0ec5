"""Webhooks on the whole system: durable, ordered, signed CloudEvents deliveries; the routes'
validation, roles and secrecy."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from limiquantix.common import nats_auth, subjects
from limiquantix.local.stack import Stack
from tests.support.cli import Lq, base_env
from tests.support.disks import make_qcow2
from tests.support.flows import create_vm, unique_name, wait_state
from tests.support.webhooks import Receiver

pytestmark = pytest.mark.stack


async def _create(api: aiohttp.ClientSession, expect: int = 201, **body: Any) -> dict[str, Any]:
    async with api.post("/v1/webhooks", json=body) as response:
        payload = await response.json(content_type=None)
        assert response.status == expect, payload
        return dict(payload)


async def _json(api: aiohttp.ClientSession, method: str, path: str, expect: int = 200) -> Any:
    async with api.request(method, path) as response:
        payload = await response.json(content_type=None)
        assert response.status == expect, payload
        return payload


async def _stream_vm_events(stack: Stack, after_seq: int) -> list[tuple[int, str]]:
    """(sequence, VM id) of every VM event in LQ_EVENTS after ``after_seq``, read as the
    gateway with an ephemeral consumer (what a receiver must get, in order)."""
    nc = await nats.connect(**stack.nats_options(nats_auth.API))
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(subjects.vm_events(), durable=None,
                                      stream=subjects.EVENTS_STREAM, config=ConsumerConfig(
                                          deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                          opt_start_seq=after_seq + 1,
                                          ack_policy=AckPolicy.NONE))
        out: list[tuple[int, str]] = []
        while True:
            try:
                msgs = await sub.fetch(256, timeout=0.5)
            except TimeoutError:
                return out
            out += [(m.metadata.sequence.stream, m.subject.split(".")[3]) for m in msgs]
    finally:
        await nc.close()


async def _last_sequence(stack: Stack) -> int:
    nc = await nats.connect(**stack.nats_options(nats_auth.API))
    try:
        info = await nc.jetstream().stream_info(subjects.EVENTS_STREAM)
        return int(info.state.last_seq)
    finally:
        await nc.close()


async def test_a_receiver_down_for_the_first_events_gets_all_of_them_in_order_and_signed(
        stack: Stack, api: aiohttp.ClientSession, receiver: Receiver, tmp_path: Path) -> None:
    """The receiver is not listening while 3 VMs are created (>= 10 events); once it listens it
    gets every VM event, in stream order (so in order per VM), each signed, as CloudEvents."""
    start_seq = await _last_sequence(stack)
    hook = await _create(api, url=receiver.url, events=["vm.*"], secret=receiver.secret)
    image = make_qcow2(tmp_path / "base.qcow2")
    vms = [await create_vm(api, name=unique_name(), image=str(image), memory_mib=256,
                           disk_gib=1) for _ in range(3)]
    for vm in vms:
        await wait_state(api, vm["id"], "running")
    expected = await _stream_vm_events(stack, start_seq)
    assert len(expected) >= 10, expected
    # While down, the first event is retried (and logged), the others wait behind it.
    deadline = time.monotonic() + 15
    while True:
        log = (await _json(api, "GET", f"/v1/webhooks/{hook['id']}/deliveries"))["deliveries"]
        if sum(d["outcome"] == "retrying" for d in log) >= 2:
            break
        assert time.monotonic() < deadline, log
        await asyncio.sleep(0.1)
    assert {d["event_id"] for d in log} == {str(expected[0][0])}
    assert all(d["status_code"] is None and d["error"] for d in log)

    await receiver.start()
    # Later events (none expected on the test driver) would follow these: compare the prefix.
    got = (await receiver.wait_for(len(expected)))[:len(expected)]
    assert [int(r.event["id"]) for r in got] == [seq for seq, _ in expected]
    assert all(r.signature_ok for r in got)
    assert all(r.content_type == "application/cloudevents+json" for r in got)
    for vm in vms:
        mine = [int(r.event["id"]) for r in got if r.event["subject"] == vm["id"]]
        assert mine == sorted(mine) and mine, vm["id"]
    first = got[0].event
    assert first["specversion"] == "1.0" and first["type"] == first["data"]["type"]
    assert first["type"].startswith("vm.") and first["data"]["vm_id"] == first["subject"]
    assert first["source"] and first["time"]
    log = (await _json(api, "GET", f"/v1/webhooks/{hook['id']}/deliveries"))["deliveries"]
    assert log[0]["outcome"] == "delivered" and log[0]["status_code"] == 204


async def test_test_delivers_a_signed_test_event_and_the_secret_is_never_shown(
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    await receiver.start()
    hook = await _create(api, url=receiver.url, events=["vm.state_changed", "node.*"],
                         secret=receiver.secret)
    assert "secret" not in hook and hook["events"] == ["vm.state_changed", "node.*"]
    attempt = await _json(api, "POST", f"/v1/webhooks/{hook['id']}/test")
    assert attempt["outcome"] == "delivered" and attempt["status_code"] == 204
    [received] = await receiver.wait_for(1)
    assert received.signature_ok
    assert received.event["type"] == "webhook.test"
    assert received.event["id"] == attempt["event_id"]
    assert received.event["data"]["webhook_id"] == hook["id"]
    shown = await _json(api, "GET", f"/v1/webhooks/{hook['id']}")
    listed = await _json(api, "GET", "/v1/webhooks")
    assert receiver.secret not in str(shown) + str(listed)
    assert [w["id"] for w in listed["webhooks"]] == [hook["id"]]
    log = await _json(api, "GET", f"/v1/webhooks/{hook['id']}/deliveries")
    assert [d["event_id"] for d in log["deliveries"]] == [attempt["event_id"]]
    async with api.delete(f"/v1/webhooks/{hook['id']}") as response:
        assert response.status == 204
    problem = await _json(api, "GET", f"/v1/webhooks/{hook['id']}", expect=404)
    assert problem["code"] == "webhook_not_found"


async def test_refused_addresses_unknown_events_and_unknown_fields_are_422(
        api: aiohttp.ClientSession) -> None:
    secret = "s" * 16
    refused = await _create(api, 422, url="http://10.20.30.40/hook", events=["vm.*"],
                            secret=secret)
    assert refused["code"] == "outbound_refused"
    assert "LQ_WEBHOOK_ALLOWED_NETWORKS" in refused["hint"]
    metadata = await _create(api, 422, url="http://169.254.169.254/latest", events=["*"],
                             secret=secret)
    assert metadata["code"] == "outbound_refused"
    scheme = await _create(api, 422, url="file:///etc/passwd", events=["*"], secret=secret)
    assert scheme["code"] == "scheme_not_allowed"
    unknown = await _create(api, 422, url="http://127.0.0.1:9/x", events=["vm.exploded"],
                            secret=secret)
    assert unknown["code"] == "unknown_event_type" and "vm.state_changed" in unknown["detail"]
    extra = await _create(api, 422, url="http://127.0.0.1:9/x", events=["*"], secret=secret,
                          retries=3)
    assert extra["code"] == "invalid_request"
    short = await _create(api, 422, url="http://127.0.0.1:9/x", events=["*"], secret="short")
    assert short["code"] == "invalid_request"
    assert (await _json(api, "GET", "/v1/webhooks"))["webhooks"] == []


async def test_a_viewer_lists_webhooks_but_cannot_create_or_delete_them(
        stack: Stack, api: aiohttp.ClientSession) -> None:
    hook = await _create(api, url="http://127.0.0.1:9/x", events=["*"], secret="s" * 16)
    async with api.post("/v1/tokens", json={"name": "auditor", "role": "viewer"}) as response:
        assert response.status == 201
        token = (await response.json())["token"]
    async with aiohttp.ClientSession(base_url=stack.api_url, headers={
            "Authorization": f"Bearer {token}"}) as viewer:
        assert [w["id"] for w in (await _json(viewer, "GET", "/v1/webhooks"))["webhooks"]] == [
            hook["id"]]
        denied = await _create(viewer, 403, url="http://127.0.0.1:9/y", events=["*"],
                               secret="s" * 16)
        assert denied["code"] == "forbidden"
        await _json(viewer, "DELETE", f"/v1/webhooks/{hook['id']}", expect=403)
        await _json(viewer, "POST", f"/v1/webhooks/{hook['id']}/test", expect=403)


async def test_only_the_gateway_can_read_webhook_secrets(stack: Stack,
                                                        api: aiohttp.ClientSession) -> None:
    """The records holding secrets are out of reach of the node and image library identities."""
    await _create(api, url="http://127.0.0.1:9/x", events=["*"], secret="s" * 16)
    for identity in (nats_auth.node_identity("node-a"), nats_auth.IMAGE_LIBRARY):
        nc = await nats.connect(**stack.nats_options(identity))
        try:
            with pytest.raises(TimeoutError):  # a permissions violation: no answer ever comes
                kv = await nc.jetstream(timeout=1.0).key_value(subjects.WEBHOOKS_BUCKET)
                await kv.keys()
        finally:
            await nc.close()


async def test_lq_webhook_commands_create_test_show_deliveries_and_delete(
        stack: Stack, receiver: Receiver, tmp_path: Path) -> None:
    await receiver.start()
    lq = Lq({**base_env(tmp_path), "LQ_URL": stack.api_url, "LQ_API_TOKEN": stack.api_token})
    created = await lq("webhook", "create", receiver.url, "--events", "vm.*", "--json",
                       env={"LQ_WEBHOOK_SECRET": receiver.secret})
    assert created.code == 0, created.err
    hook_id = json.loads(created.out)["id"]
    assert receiver.secret not in created.out + created.err
    tested = await lq("webhook", "test", hook_id)
    assert tested.code == 0 and "delivered" in tested.out, tested.out + tested.err
    [received] = await receiver.wait_for(1)
    assert received.signature_ok
    listed = await lq("webhook", "list")
    assert hook_id in listed.out and receiver.url in listed.out
    log = await lq("webhook", "deliveries", hook_id, "--json")
    assert [d["event_type"] for d in json.loads(log.out)] == ["webhook.test"]
    generated = await lq("webhook", "create", receiver.url)  # no secret given: one is made
    assert generated.code == 0 and len(generated.out.strip()) >= 32, generated.err
    deleted = await lq("webhook", "delete", hook_id)
    assert deleted.code == 0
    missing = await lq("webhook", "show", hook_id)
    assert missing.code == 1 and "webhook_not_found" in missing.err + missing.out
