"""Every service's /metrics moves when a VM is created from an imported image (real stack)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from limiquantix.common.nats_server import free_port
from limiquantix.local.stack import Stack
from tests.metrics.scrape import sample_sum
from tests.support.disks import make_qcow2
from tests.support.flows import FAST_ENV, create_vm, unique_name, wait_state
from tests.support.guest_vm import import_image, serve_file

pytestmark = pytest.mark.stack


class Scraped:
    """A stack with the node agent's metrics port on, and a scrape of each service."""

    def __init__(self, stack: Stack, node_port: int) -> None:
        self.stack = stack
        self.node_url = f"http://127.0.0.1:{node_port}/metrics"

    async def text(self, url: str, headers: dict[str, str] | None = None) -> str:
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Content-Type"].startswith("text/plain")
            return await r.text()

    async def api(self) -> str:
        return await self.text(self.stack.api_url + "/metrics", self.stack.headers())

    async def node(self) -> str:
        return await self.text(self.node_url)

    async def library(self) -> str:
        return await self.text(self.stack.image_library_url + "/metrics")


@pytest.fixture
async def scraped(tmp_path: Path) -> AsyncIterator[Scraped]:
    node_port = free_port()
    async with Stack(tmp_path / "stack", nodes=(), extra_env=FAST_ENV) as stack:
        await stack.start_node("node-a", LQ_NODE_METRICS_PORT=str(node_port))
        yield Scraped(stack, node_port)


async def _poll(read: object, check: object, timeout_s: float = 10.0) -> str:
    """Scrape until ``check(text)`` holds (node gauges follow the next heartbeat)."""
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = await read()  # type: ignore[operator]
        if check(text):  # type: ignore[operator]
            return text
        await asyncio.sleep(0.2)
    raise AssertionError(f"metrics never satisfied the check; last scrape:\n{text[-3000:]}")


async def test_metrics_of_every_service_move_after_a_create(scraped: Scraped,
                                                            tmp_path: Path) -> None:
    stack = scraped.stack
    before_api, before_node = await scraped.api(), await scraped.node()
    async with aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as api:
        async with serve_file(make_qcow2(tmp_path / "base.qcow2")) as url:
            image_id = await import_image(api, url, timeout_s=60)
        vms = [await create_vm(api, name=unique_name(), image=image_id, memory_mib=256,
                               disk_gib=1) for _ in range(2)]
        for vm in vms:
            await wait_state(api, vm["id"], "running")

    api_text = await scraped.api()
    created = sample_sum(api_text, "lq_http_requests_total", method="POST", route="/v1/vms",
                         status="202")
    assert created - sample_sum(before_api, "lq_http_requests_total", method="POST",
                                route="/v1/vms", status="202") == 2
    # Routes are canonical paths: GET /v1/vms/<id> polls count under the template, no raw id.
    assert sample_sum(api_text, "lq_http_requests_total", route="/v1/vms/{vm}") > 0 or \
        sample_sum(api_text, "lq_http_requests_total", route="/v1/vms/{vm_id}") > 0
    assert not [line for line in api_text.splitlines() if vms[0]["id"] in line]
    assert sample_sum(api_text, "lq_http_request_duration_seconds_count", method="POST",
                      route="/v1/vms") >= 2
    assert sample_sum(api_text, "lq_vms", state="running", node="node-a") == 2
    assert sample_sum(api_text, "lq_events_published_total", type="vm.state_changed") >= 2

    node_text = await _poll(scraped.node, lambda t: sample_sum(
        t, "lq_node_vcpus", node="node-a", kind="allocated") >= 2)
    assert sample_sum(node_text, "lq_vm_provision_seconds_count", phase="running") - \
        sample_sum(before_node, "lq_vm_provision_seconds_count", phase="running") == 2
    assert sample_sum(node_text, "lq_vm_provision_seconds_bucket", phase="running",
                      le="+Inf") >= 2
    assert sample_sum(node_text, "lq_node_image_cache_requests_total", result="miss") >= 1
    assert sample_sum(node_text, "lq_node_image_cache_downloaded_bytes_total") > 0
    assert sample_sum(node_text, "lq_node_memory_bytes", node="node-a", kind="capacity") > 0
    assert sample_sum(node_text, "lq_node_vms", node="node-a") == 2

    library_text = await scraped.library()
    assert sample_sum(library_text, "lq_image_imports_total", result="active") == 1
    assert sample_sum(library_text, "lq_image_import_bytes_total") > 0
    assert sample_sum(library_text, "lq_image_file_requests_total") >= 1

    # Every service measures its loop's lag and its collector's pauses (4 probes a second).
    for text in (api_text, node_text, library_text):
        assert sample_sum(text, "lq_event_loop_lag_seconds_count") >= 1
        assert "lq_gc_pause_seconds_count" in text


async def test_gateway_metrics_need_the_token_unless_made_public(tmp_path: Path) -> None:
    async with Stack(tmp_path / "closed", nodes=(), extra_env=FAST_ENV) as stack, \
            aiohttp.ClientSession() as session:
        async with session.get(stack.api_url + "/metrics") as response:
            assert response.status == 401
            assert (await response.json(content_type=None))["code"] == "unauthorized"
        async with session.get(stack.api_url + "/v1/no-such-route-4e1f",
                               headers=stack.headers()) as response:
            assert response.status == 404
        async with session.get(stack.api_url + "/metrics", headers=stack.headers()) as response:
            assert response.status == 200
            text = await response.text()
        # An unknown path is counted as "unmatched": raw paths would be an unbounded label.
        assert "no-such-route-4e1f" not in text
        assert sample_sum(text, "lq_http_requests_total", route="unmatched", status="404") >= 1
        async with session.get(stack.api_url + "/v1/asyncapi.json") as response:
            assert response.status == 200  # public, like openapi.json
            assert (await response.json())["asyncapi"] == "3.0.0"
    async with Stack(tmp_path / "open", nodes=(),
                     extra_env={**FAST_ENV, "LQ_METRICS_PUBLIC": "true"}) as stack, \
            aiohttp.ClientSession() as session, \
            session.get(stack.api_url + "/metrics") as response:
        assert response.status == 200
        assert "lq_http_requests_total" in await response.text()
