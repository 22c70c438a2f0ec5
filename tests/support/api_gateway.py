"""The gateway app on aiohttp's test server next to a real NATS, and a test's view of it: a
"node" is a real heartbeat entry written with that node's NATS identity; commands are read back
from the JetStream commands stream as the gateway."""


from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import nats
from aiohttp.test_utils import TestClient
from nats.aio.client import Client
from nats.js import JetStreamContext

from limiquantix.api import app_keys
from limiquantix.common import nats_auth, subjects
from limiquantix.common.commands import Command, command_decoder
from limiquantix.common.model import utcnow
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.nodes import NodeStatus, node_encoder

TOKEN = "test-token-0123456789"
HEARTBEAT_S = 1.0


@dataclass
class Gateway:
    client: TestClient  # type: ignore[type-arg]
    nc: Client  # NATS identity "api", as the gateway itself
    js: JetStreamContext
    token: str
    server: NatsServer
    nodes: dict[str, Client] = field(default_factory=dict)

    async def as_node(self, node_id: str) -> Client:
        """A NATS connection with ``node_id``'s identity (made on first use)."""
        if node_id not in self.nodes:
            await self.server.add_node(node_id)
            self.nodes[node_id] = await nats.connect(
                **self.server.connect_options(nats_auth.node_identity(node_id)))
        return self.nodes[node_id]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def heartbeat(self, node_id: str, *, vcpus: int = 8, memory_mib: int = 16384,
                        allocated_vcpus: int = 0, allocated_memory_mib: int = 0,
                        vm_ids: tuple[str, ...] = ()) -> None:
        """Write a node heartbeat, as a node agent does (with its identity), and wait until the
        gateway's node view has it (placement reads the view: a create racing the watch would
        find no node)."""
        kv = await (await self.as_node(node_id)).jetstream().key_value(subjects.NODES_BUCKET)
        beat = NodeStatus(
            id=node_id, vcpus=vcpus, memory_mib=memory_mib, allocated_vcpus=allocated_vcpus,
            allocated_memory_mib=allocated_memory_mib, vm_ids=vm_ids, heartbeat_at=utcnow(),
            libvirt_uri="test:///default", virt_type="test",
        )
        await kv.put(node_id, node_encoder.encode(beat))
        view = self.client.server.app[app_keys.NODE_VIEW]
        deadline = time.monotonic() + 5
        while (seen := view.get(node_id)) is None or seen.heartbeat_at != beat.heartbeat_at:
            assert time.monotonic() < deadline, f"the gateway never saw {node_id}'s heartbeat"
            await asyncio.sleep(0.005)

    async def commands(self, node_id: str) -> list[Command]:
        """Every command queued for ``node_id`` (read without consuming)."""
        info = await self.js.stream_info(subjects.COMMANDS_STREAM)
        found: list[Command] = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await self.js.get_msg(subjects.COMMANDS_STREAM, seq)
            except Exception:
                continue
            if msg.subject == subjects.node_commands(node_id):
                found.append(command_decoder.decode(msg.data or b""))
        return found


MakeGateway = Callable[..., Awaitable[Gateway]]
