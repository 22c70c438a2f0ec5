"""A node agent running ``serve()`` in this process (libvirt's test driver) on a real NATS,
with its node's own identity, and a client playing the gateway that publishes commands and
collects every event."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import libvirt
import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from limiquantix.common import nats_auth, nats_client, subjects
from limiquantix.common import settings as settings_mod
from limiquantix.common.commands import Command, CreateVm, command_encoder
from limiquantix.common.events import Event, event_decoder
from limiquantix.common.model import utcnow
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.settings import Settings
from limiquantix.common.vm_store import VmStore
from limiquantix.common.vms import NetworkSpec, VmRecord, VmState
from limiquantix.node_agent.libvirt_host import domain_uuid
from limiquantix.node_agent.main import serve
from tests.support.flows import unique_name

STOP_WAIT_S = 30.0  # how long the agent may take to stop or to honour a cancel


@dataclass
class AgentHarness:
    """One node agent running ``serve()`` in this process, plus a client connection."""

    settings: Settings
    nc: Client
    js: JetStreamContext
    store: VmStore
    events: list[Event] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def node_id(self) -> str:
        return self.settings.effective_node_id

    @property
    def data_dir(self) -> Path:
        return self.settings.data_path

    def vm_dir(self, vm_id: str) -> Path:
        return self.data_dir / "images" / vm_id

    async def start(self, **overrides: object) -> None:
        """Start (or restart) the agent, optionally with other settings."""
        if overrides:
            self.settings = msgspec.structs.replace(self.settings, **overrides)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(serve(self.settings, self.stop))
        await self.wait_heartbeat()

    async def wait_heartbeat(self, timeout_s: float = 15.0) -> None:
        nodes = await nats_client.bucket(self.js, subjects.NODES_BUCKET)
        async with asyncio.timeout(timeout_s):
            while True:
                assert self.task is not None
                if self.task.done():
                    self.task.result()  # raises what made the agent fail
                    raise AssertionError("agent exited before its first heartbeat")
                with contextlib.suppress(Exception):
                    entry = await nodes.get(self.node_id)
                    if entry.value:
                        return
                await asyncio.sleep(0.05)

    async def shutdown(self) -> None:
        """SIGTERM equivalent: set stop and wait for a clean return."""
        if self.task is not None and not self.task.done():
            self.stop.set()
            done, _ = await asyncio.wait({self.task}, timeout=STOP_WAIT_S)
            if not done:
                await _cancel(self.task)
                raise AssertionError(f"the node agent did not stop within {STOP_WAIT_S:g} s")
            self.task.result()  # what the agent raised on its way out, if anything
        self.task = None

    async def crash(self) -> None:
        """Cancel the agent mid-work (no clean stop): unacked commands are redelivered."""
        if self.task is not None:
            await _cancel(self.task)
        self.task = None

    async def send(self, command: Command) -> None:
        await self.js.publish(subjects.node_commands(self.node_id),
                              command_encoder.encode(command),
                              headers={"Nats-Msg-Id": command.command_id})

    async def new_vm(self, image: Path | str, *, network: NetworkSpec | None = None,
                     disk_gib: int = 1, memory_mib: int = 128) -> VmRecord:
        """Store a pending record as the API would, and publish its create command."""
        now = utcnow()
        record = VmRecord(
            id=str(uuid.uuid4()), name=unique_name(), node=self.node_id, image=str(image),
            vcpus=1, memory_mib=memory_mib, disk_gib=disk_gib, network=network or NetworkSpec(),
            created_at=now, updated_at=now,
        )
        await self.store.create(record)
        await self.send(CreateVm(command_id=uuid.uuid4().hex, vm_id=record.id))
        return record

    async def wait_record(self, vm_id: str, predicate: Callable[[VmRecord | None], bool],
                          timeout_s: float = 15.0) -> VmRecord | None:
        record: VmRecord | None = None
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    record = await self.store.find(vm_id)
                    if predicate(record):
                        return record
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"record of {vm_id} never matched; last: {record}") from None

    async def wait_state(self, vm_id: str, state: VmState, timeout_s: float = 15.0) -> VmRecord:
        record = await self.wait_record(
            vm_id, lambda r: r is not None and r.state == state, timeout_s)
        assert record is not None
        return record

    def events_of(self, vm_id: str, kind: type[Event] | None = None) -> list[Event]:
        return [e for e in self.events
                if getattr(e, "vm_id", None) == vm_id and (kind is None or isinstance(e, kind))]

    async def wait_event(self, predicate: Callable[[Event], bool],
                         timeout_s: float = 10.0) -> Event:
        async with asyncio.timeout(timeout_s):
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                await asyncio.sleep(0.02)

    async def pending_commands(self) -> int:
        info = await self.js.stream_info(subjects.COMMANDS_STREAM)
        return int(info.state.messages)

    async def until_acked(self, timeout_s: float = 10.0) -> None:
        """Poll until every command sent is acked (handled, or given up on and terminated)."""
        deadline = time.monotonic() + timeout_s
        while await self.pending_commands():
            assert time.monotonic() < deadline, "commands still unacked"
            await asyncio.sleep(0.02)


def driver_domains() -> list[libvirt.virDomain]:
    """Every domain of the test driver (its state is shared within this process)."""
    return libvirt.open("test:///default").listAllDomains()


def find_domain(vm_id: str, uri: str = "test:///default") -> libvirt.virDomain | None:
    try:
        return libvirt.open(uri).lookupByUUIDString(domain_uuid(vm_id))
    except libvirt.libvirtError:
        return None


def remove_domains(vm_ids: list[str], uri: str = "test:///default") -> None:
    """Destroy and undefine what a failed test may have left (by UUID, nothing else)."""
    if not uri.startswith("test:"):
        for vm_id in vm_ids:  # virsh: see tests/node_agent/test_e2e_qemu.py
            for action in ("destroy", "undefine"):
                subprocess.run(["virsh", "-c", uri, action, domain_uuid(vm_id)],
                               capture_output=True)
        return
    conn = libvirt.open(uri)
    for vm_id in vm_ids:
        with contextlib.suppress(libvirt.libvirtError):
            dom = conn.lookupByUUIDString(domain_uuid(vm_id))
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    conn.close()


def agent_settings(nats_url: str, data_dir: Path, **overrides: object) -> Settings:
    base = {
        "nats_url": nats_url, "data_dir": str(data_dir), "libvirt_uri": "test:///default",
        "node_id": unique_name("node"), "heartbeat_interval_s": 0.5,
        "reconcile_interval_s": 1.0, "command_ack_wait_s": 2.0, "stop_timeout_s": 2.0,
        "log_format": "console",
        # Test images are files next to the node's data dir (tmp_path/base.qcow2, ...): the
        # directory node paths must lie in (LQ_HOST_IMAGE_DIRS) is that parent.
        "host_image_dirs": str(data_dir.parent),
    }
    base.update(overrides)
    return settings_mod.load({}, **base)


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel the agent's task and wait for it, bounded: an agent that swallows a cancel
    fails the test here instead of hanging the whole run (``asyncio.wait_for`` and a bare
    ``await`` wait for a cancelled task without a bound)."""
    task.cancel()
    await asyncio.wait({task}, timeout=STOP_WAIT_S)
    if not task.done():
        raise AssertionError(f"the node agent ignored a cancel for {STOP_WAIT_S:g} s")
    if not task.cancelled():
        task.result()  # it ended with an error of its own instead: raise that


@contextlib.asynccontextmanager
async def running_agent(server: NatsServer, settings: Settings) -> AsyncIterator[AgentHarness]:
    """An agent with ``settings`` (and its node's own NATS identity) and a client, playing the
    gateway, that collects every event; all cleaned up after."""
    creds = await server.add_node(settings.effective_node_id)
    settings = msgspec.structs.replace(settings, nats_creds=str(creds))
    async with nats_client.connect(settings.nats_url, name="test",
                                   creds=str(server.creds_for(nats_auth.API))) as nc:
        js = nc.jetstream()
        await nats_client.ensure_jetstream(js, heartbeat_interval_s=settings.heartbeat_interval_s)
        store = VmStore(await nats_client.bucket(js, subjects.VMS_BUCKET),
                        await nats_client.bucket(js, subjects.VM_NAMES_BUCKET))
        h = AgentHarness(settings=settings, nc=nc, js=js, store=store)

        async def collect(msg: Msg) -> None:
            h.events.append(event_decoder.decode(msg.data))
        sub = await nc.subscribe(subjects.all_events(), cb=collect)
        await h.start()
        try:
            yield h
        finally:
            await h.shutdown()
            await sub.unsubscribe()
            remove_domains([r.id for r in await store.all()], settings.libvirt_uri)
