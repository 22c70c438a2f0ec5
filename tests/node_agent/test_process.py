"""The node agent as its console script: SIGTERM drains, withdraws the node and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from limiquantix.common import nats_client, subjects
from limiquantix.common.nats_server import NatsServer
from tests.node_agent.conftest import unique_name


async def test_sigterm_withdraws_the_node_and_exits_zero(
        nats_server: NatsServer, tmp_path: Path) -> None:
    node = unique_name("node")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LQ_")}
    env.update({"LQ_NATS_URL": nats_server.url, "LQ_DATA_DIR": str(tmp_path / "node"),
                "LQ_NODE_ID": node, "LQ_LIBVIRT_URI": "test:///default",
                "LQ_HEARTBEAT_INTERVAL_S": "0.5", "LQ_LOG_FORMAT": "json"})
    script = Path(sys.executable).parent / "lq-node-agent"
    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        proc = await asyncio.create_subprocess_exec(str(script), env=env, stdout=out,
                                                    stderr=out)
    try:
        async with nats_client.connect(nats_server.url, name="test") as nc:
            js = nc.jetstream()
            await nats_client.ensure_jetstream(js, heartbeat_interval_s=0.5)
            nodes = await nats_client.bucket(js, subjects.NODES_BUCKET)
            async with asyncio.timeout(20):
                while True:
                    try:
                        if (await nodes.get(node)).value:
                            break
                    except Exception:
                        pass
                    await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0, log.read_text()[-2000:]
            try:
                gone = not (await nodes.get(node)).value
            except Exception:
                gone = True
            assert gone
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert b'"node agent ready"' in log.read_bytes()
