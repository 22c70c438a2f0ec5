"""Nothing gets stuck on the node side (issue 11) on the real stack: the image library killed
during a VM's image download, and kill -9 of the node agent or the image library during a burst
of creates. Afterwards every create ended in `running` (or a clear error), nothing is pending
and no name leaked."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from limiquantix.common import nats_auth
from limiquantix.common.kv_records import bucket_keys
from limiquantix.common.vm_store import VmStore
from limiquantix.local.stack import Stack
from tests.support.counting_proxy import start_proxy
from tests.support.disks import make_qcow2_with_data
from tests.support.flows import FAST_ENV, create_until_answered, get_vm, unique_name, wait_state
from tests.support.waits import eventually

pytestmark = pytest.mark.stack

NODE = "node-a"
UNFINISHED = {"pending", "creating", "starting"}


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """The stack without its node: each test starts it (some behind a throttling proxy)."""
    env = {**FAST_ENV, "LQ_CREATE_SWEEP_AFTER_S": "2", "LQ_NODE_VCPUS": "64",
           "LQ_TRANSIENT_RETRY_S": "60"}
    async with Stack(tmp_path / "s", nodes=(), extra_env=env) as running:
        yield running


async def kill_library(stack: Stack) -> None:
    """SIGKILL the image library and wait until the process is gone."""
    service = stack.services["image-library"]
    service.kill()
    if service.process is not None:
        await service.process.wait()


async def start_library(stack: Stack) -> None:
    """Start the image library again, with the data it had, and wait until it answers."""
    env = stack._env(stack._data("image-library"), nats_auth.IMAGE_LIBRARY)
    await stack._start("image-library", "lq-image-library", env)
    await stack._wait_http(stack.image_library_url + "/healthz", "image-library")


async def upload(api: aiohttp.ClientSession, path: Path) -> str:
    async with api.post("/v1/images", json={"name": unique_name("img")}) as response:
        assert response.status == 201, await response.text()
        record = await response.json()
    async with api.put(f"/v1/images/{record['id']}/file", data=path.read_bytes()) as response:
        assert response.status == 200, await response.text()
    return str(record["id"])


async def wait_progress(api: aiohttp.ClientSession, vm_id: str, at_least: float,
                        timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _, record = await get_vm(api, vm_id)
        if record["state"] == "creating" and (record.get("image_progress") or 0) >= at_least:
            return
        assert record["state"] in UNFINISHED, record
        await asyncio.sleep(0.05)
    raise AssertionError(f"VM {vm_id} never downloaded {at_least:.0%} of its image")


async def test_a_vm_whose_image_download_is_cut_by_a_library_kill_reaches_running(
        stack: Stack, api: aiohttp.ClientSession, tmp_path: Path) -> None:
    """Issue 11 row 7: the node retries (and resumes) the download once the library is back."""
    image = await upload(api, make_qcow2_with_data(tmp_path / "big.qcow2", mib=12))
    async for proxy in start_proxy(stack.image_library_url, rate=2 << 20):  # ~6 s for 12 MiB
        await stack.start_node(NODE, LQ_IMAGE_LIBRARY_URL=proxy.url)
        async with api.post("/v1/vms", json={"name": unique_name(), "image": image,
                                             "memory_mib": 64, "disk_gib": 1}) as response:
            assert response.status == 202, await response.text()
            vm = await response.json()
        await wait_progress(api, vm["id"], 0.25)
        await kill_library(stack)
        # A retry met the library down (502): the node is waiting for it.
        await eventually(functools.partial(proxy.requested, f"/images/{image}/file", 2),
                         timeout_s=20.0, what="a retry of the download while the library is down")
        _, waiting = await get_vm(api, vm["id"])
        assert waiting["state"] == "creating" and waiting.get("error") is None, waiting
        await start_library(stack)
        await wait_state(api, vm["id"], "running", timeout_s=60)
        assert proxy.ranges, "the download started over instead of resuming"


async def _burst_with_a_kill(api: aiohttp.ClientSession, bodies: list[dict[str, Any]],
                             kill: Any, restart: Any) -> list[dict[str, Any] | None]:
    keys = [str(uuid.uuid4()) if i % 2 == 0 else None for i in range(len(bodies))]

    async def kill_and_restart() -> None:
        await asyncio.sleep(0.3)  # deliberate: the kill lands in the middle of the burst
        await kill()
        await asyncio.sleep(1.0)  # deliberate: down for a while, as a crash would be
        await restart()

    results = await asyncio.gather(
        kill_and_restart(),
        *(create_until_answered(api, body, key) for body, key in zip(bodies, keys, strict=True)))
    return list(results[1:])


async def _every_create_ended(api: aiohttp.ClientSession, store: VmStore, count: int,
                              timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Every VM `running` (or `error` with a code), none unfinished, and no name leaked."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with api.get("/v1/vms") as response:
            vms: list[dict[str, Any]] = (await response.json())["items"]
        states = {vm["state"] for vm in vms}
        if len(vms) == count and not states & UNFINISHED and states <= {"running", "error"}:
            break
        assert time.monotonic() < deadline, sorted((vm["name"], vm["state"]) for vm in vms)
        await asyncio.sleep(0.2)
    for vm in vms:
        assert vm["state"] == "running" or vm["error"]["code"], vm
    existing = {vm["name"] for vm in vms}
    for name in await bucket_keys(store.names):
        if await store.id_for_name(name) is not None:
            assert name in existing, f"leaked name {name}"
    return vms


async def test_a_node_agent_killed_during_a_burst_of_creates_leaves_nothing_behind(
        stack: Stack, api: aiohttp.ClientSession, store: VmStore) -> None:
    await stack.start_node(NODE)
    bodies = [{"name": unique_name("burst"), "memory_mib": 64, "disk_gib": 1} for _ in range(40)]
    await _burst_with_a_kill(api, bodies, lambda: stack.kill_node(NODE),
                             lambda: stack.start_node(NODE))
    vms = await _every_create_ended(api, store, len(bodies))
    assert {vm["state"] for vm in vms} == {"running"}  # the node had room for all


async def test_an_image_library_killed_during_a_burst_of_creates_leaves_nothing_behind(
        stack: Stack, api: aiohttp.ClientSession, store: VmStore, tmp_path: Path) -> None:
    await stack.start_node(NODE)
    image = await upload(api, make_qcow2_with_data(tmp_path / "small.qcow2", mib=2))
    bodies = [{"name": unique_name("burst"), "image": image, "memory_mib": 64, "disk_gib": 1}
              for _ in range(30)]
    await _burst_with_a_kill(api, bodies, lambda: kill_library(stack),
                             lambda: start_library(stack))
    vms = await _every_create_ended(api, store, len(bodies))
    assert {vm["state"] for vm in vms} == {"running"}
