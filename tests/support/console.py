"""The console tests' gateway: the real gateway app (aiohttp test server on 127.0.0.1) on a real
NATS, VM records written into the real KV bucket, and a real QEMU domain (TCG, no disk: SeaBIOS
draws its screen) on qemu:///system with VNC on 127.0.0.1.

There is no node agent in these tests: the records a node agent would write (state, VNC
endpoint) are written here, and a lifecycle event it would publish is published here.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
from aiohttp.test_utils import TestServer
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from limiquantix.api.console.routes import GATEWAY
from limiquantix.common import subjects
from limiquantix.common.events import (
    Event,
    VmStateChanged,
    event_decoder,
    event_encoder,
    event_subject,
)
from limiquantix.common.model import utcnow
from limiquantix.common.vm_store import VmStore
from limiquantix.common.vms import VmRecord, VmState, VncEndpoint

TOKEN = "console-test-token-0123456789"
QEMU_URI = "qemu:///system"


@dataclass
class Gateway:
    """A running gateway and a test's own NATS connection next to it."""

    server: TestServer
    nc: Client
    js: JetStreamContext
    store: VmStore

    @property
    def url(self) -> str:
        return str(self.server.make_url("/"))

    @property
    def origin(self) -> str:
        return self.url.rstrip("/")

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    @property
    def open_sessions(self) -> int:
        return self.server.app[GATEWAY].open_sessions

    async def add_vm(
        self, vnc: tuple[str, int] | None, *, state: VmState = VmState.RUNNING, name: str = ""
    ) -> VmRecord:
        """A VM record as a node agent leaves it once the domain runs (no node named: none
        heartbeats here, and the API shows the VMs of an offline node as ``unknown``)."""
        vm_id = str(uuid.uuid4())
        now = utcnow()
        record = VmRecord(
            id=vm_id, name=name or f"con-{vm_id[:8]}", state=state, node="",
            image="none", vcpus=1, memory_mib=64, disk_gib=1, created_at=now, updated_at=now,
            vnc=VncEndpoint(host=vnc[0], port=vnc[1]) if vnc else None,
        )
        await self.store.create(record)
        return record

    async def publish(self, event: Event) -> None:
        """Publish an event on the events stream, as a node agent does."""
        await self.js.publish(event_subject(event), event_encoder.encode(event))

    async def stop_vm(self, record: VmRecord) -> None:
        """Record and announce 'stopped', as the node agent does after the domain is off."""
        await self.store.update(
            record.id, lambda r: msgspec.structs.replace(r, state=VmState.STOPPED, vnc=None)
        )
        await self.publish(VmStateChanged(
            vm_id=record.id, name=record.name, node=record.node, state=VmState.STOPPED,
            previous=VmState.RUNNING,
        ))

    async def ticket(self, http: aiohttp.ClientSession, vm: str) -> dict[str, Any]:
        async with http.post(f"{self.url}v1/vms/{vm}/console", headers=self.auth) as response:
            body: dict[str, Any] = await response.json()
            assert response.status == 201, body
            return body

    def ws_url(self, ticket: dict[str, Any]) -> str:
        return self.url.rstrip("/") + str(ticket["url"])


MakeGateway = Callable[..., Awaitable[Gateway]]


# --- A real QEMU display -------------------------------------------------------------------

DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <graphics type='vnc' autoport='yes' listen='127.0.0.1'/>
    <video><model type='vga'/></video>
    <memballoon model='none'/>
  </devices>
</domain>"""


@dataclass
class QemuDisplay:
    """A transient QEMU domain (no disk, no NIC) and its VNC endpoint."""

    name: str
    host: str
    port: int
    _domain: Any

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self._domain.destroy()


def start_domain() -> QemuDisplay:
    import libvirt

    conn = libvirt.open(QEMU_URI)
    vm_uuid = uuid.uuid4()
    name = f"lq-console-test-{vm_uuid.hex[:8]}"
    domain = conn.createXML(DOMAIN_XML.format(name=name, uuid=vm_uuid), 0)
    graphics = ET.fromstring(domain.XMLDesc(0)).find("./devices/graphics[@type='vnc']")
    assert graphics is not None
    return QemuDisplay(name=name, host="127.0.0.1", port=int(graphics.get("port", "0")),
                       _domain=domain)


@contextlib.contextmanager
def qemu_display() -> Iterator[QemuDisplay]:
    """A running QEMU display, destroyed (transient: gone) afterwards."""
    display = start_domain()
    try:
        yield display
    finally:
        display.destroy()


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.02)


async def console_events(gateway: Gateway, vm_id: str) -> list[Event]:
    """The console audit events of one VM, read back from the events stream."""
    sub = await gateway.js.subscribe(
        subjects.console_events(vm_id), ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    found: list[Event] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                return found
            found.append(event_decoder.decode(msg.data))
    finally:
        await sub.unsubscribe()
