"""A node agent killed with a command in flight loses nothing and makes exactly one VM."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from limiquantix.local.stack import Stack
from tests.support.disks import make_qcow2
from tests.support.flows import FAST_ENV, create_vm, unique_name, wait_state

pytestmark = pytest.mark.stack


async def test_agent_killed_before_ack_then_restarted_makes_exactly_one_vm(
        tmp_path: Path) -> None:
    image = make_qcow2(tmp_path / "base.qcow2")
    async with Stack(tmp_path / "s", nodes=(), extra_env=FAST_ENV) as stack:
        # The failpoint holds the agent after the work is done and before the ack.
        await stack.start_node("node-a", LQ_FAILPOINTS="before_ack=sleep:30")
        async with aiohttp.ClientSession(base_url=stack.api_url,
                                         headers=stack.headers()) as api:
            vm = await create_vm(api, name=unique_name(), image=str(image), memory_mib=256,
                                 disk_gib=1)
            await wait_state(api, vm["id"], "running")
            await stack.kill_node("node-a")
            await stack.start_node("node-a")  # no failpoint: the redelivery is finished
            # The create is redelivered after the ack wait; done when it is acked (the work
            # queue empties), which the checks below then look behind.
            deadline = time.monotonic() + float(FAST_ENV["LQ_COMMAND_ACK_WAIT_S"]) + 30
            while await _pending_commands(stack) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            record = await wait_state(api, vm["id"], "running")
            assert not record.get("error")
            async with api.get("/v1/vms") as response:
                listed = await response.json()
            items = listed["items"] if isinstance(listed, dict) else listed
            assert [v["id"] for v in items] == [vm["id"]]
            vm_dir = stack.node_data_dir("node-a") / "images" / vm["id"]
            files = sorted(p.name for p in vm_dir.iterdir())
            assert files.count("disk.qcow2") == 1
            assert not [f for f in files if f.startswith(".") or f.endswith(".tmp")], files
            # The redelivered create was acked this time: nothing left in the work queue.
            js_pending = await _pending_commands(stack)
            assert js_pending == 0


async def _pending_commands(stack: Stack) -> int:
    import nats

    from limiquantix.common import subjects

    nc = await nats.connect(**stack.nats_options())  # as the gateway
    try:
        info = await nc.jetstream().stream_info(subjects.COMMANDS_STREAM)
        return int(info.state.messages)
    finally:
        await nc.close()
