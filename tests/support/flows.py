"""Small steps the full-stack tests share: the stack's settings, create a VM, wait for a state."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

# Short intervals so liveness and redelivery are observable within a test's time.
FAST_ENV = {
    "LQ_HEARTBEAT_INTERVAL_S": "1",
    "LQ_RECONCILE_INTERVAL_S": "2",
    "LQ_COMMAND_ACK_WAIT_S": "3",
    "LQ_STOP_TIMEOUT_S": "5",
    "LQ_LOG_LEVEL": "debug",
    # Tests make their images with qemu-img in their temp dirs and name them by path: the
    # operator's opt-in for node images (off in production unless LQ_HOST_IMAGE_DIRS is set).
    "LQ_HOST_IMAGE_DIRS": "/tmp,/var/tmp",
    # ... and serve their imports from local HTTP servers (the import address policy refuses
    # loopback by default; tests/security checks that refusal on stacks of its own).
    "LQ_IMPORT_ALLOWED_NETWORKS": "127.0.0.0/8",
}


def unique_name(prefix: str = "vm") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def create_vm(api: aiohttp.ClientSession, expect: int = 202, headers: dict[str, str] | None
                    = None, **body: Any) -> dict[str, Any]:
    async with api.post("/v1/vms", json=body, headers=headers) as response:
        payload = await response.json(content_type=None)
        assert response.status == expect, payload
        return dict(payload)


async def get_vm(api: aiohttp.ClientSession, vm: str) -> tuple[int, dict[str, Any]]:
    async with api.get(f"/v1/vms/{vm}") as response:
        return response.status, dict(await response.json(content_type=None))


async def wait_state(api: aiohttp.ClientSession, vm_id: str, *states: str,
                     timeout_s: float = 30.0) -> dict[str, Any]:
    """Poll the record until it reaches one of ``states`` (fails fast on ``error``)."""
    return await wait_for_state(api, f"/v1/vms/{vm_id}", *states, timeout_s=timeout_s,
                                fail_on=("error",))


async def wait_for_state(api: aiohttp.ClientSession, path: str, *states: str,
                         timeout_s: float = 30.0, interval_s: float = 0.05,
                         fail_on: tuple[str, ...] = ()) -> dict[str, Any]:
    """Poll ``GET path`` (a VM, an image, a snapshot) until its ``state`` is one of ``states``;
    fails at once in a state of ``fail_on`` that is not among them."""
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        async with api.get(path) as response:
            body = dict(await response.json(content_type=None))
            assert response.status == 200, body
        if body["state"] in states:
            return body
        if body["state"] in fail_on:
            raise AssertionError(f"{path} went to {body['state']}: {body.get('error')}")
        await asyncio.sleep(interval_s)
    raise AssertionError(f"{path} not in {states} after {timeout_s:g} s: {body}")


async def wait_gone(api: aiohttp.ClientSession, vm_id: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, _ = await get_vm(api, vm_id)
        if status == 404:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"VM {vm_id} still exists after {timeout_s}s")


async def action(api: aiohttp.ClientSession, vm_id: str, name: str) -> tuple[int, dict[str, Any]]:
    async with api.post(f"/v1/vms/{vm_id}/{name}") as response:
        return response.status, dict(await response.json(content_type=None))


async def sse_events(api: aiohttp.ClientSession, query: str = "",
                     headers: dict[str, str] | None = None
                     ) -> AsyncIterator[tuple[str, str, dict[str, Any]]]:
    """(id, event type, data) from GET /v1/events, as a client parses SSE."""
    async with api.get(f"/v1/events{query}", headers=headers,
                       timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        event_id, event_type, data = "", "", ""
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if not line:
                if data:
                    yield event_id, event_type, json.loads(data)
                event_id, event_type, data = "", "", ""
            elif line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("event:"):
                event_type = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()


async def wait_image_state(api: aiohttp.ClientSession, image_id: str, *states: str,
                           timeout_s: float = 30.0) -> dict[str, Any]:
    """Poll GET /v1/images/{id} until the image reaches one of ``states``."""
    return await wait_for_state(api, f"/v1/images/{image_id}", *states, timeout_s=timeout_s)


async def create_until_answered(api: aiohttp.ClientSession, body: dict[str, Any],
                                 key: str | None) -> dict[str, Any] | None:
    """POST like a client that retries on 5xx and connection errors (keeps its key); None when
    the name turned out taken by its own earlier, unanswered attempt (no key to prove it)."""
    headers = {"Idempotency-Key": key} if key else {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with api.post("/v1/vms", json=body, headers=headers) as response:
                payload = await response.json(content_type=None)
                if response.status == 202:
                    return dict(payload)
                if response.status == 409 and payload["code"] == "name_taken" and not key:
                    return None
                # no_capacity: right after a NATS restart no heartbeat has landed yet
                assert response.status >= 500 or payload["code"] in (
                    "idempotency_in_progress", "no_capacity"), payload
        except aiohttp.ClientError:
            pass  # the gateway is down: retry
        await asyncio.sleep(0.2)
    raise AssertionError(f"no answer for {body['name']} within 60 s")
