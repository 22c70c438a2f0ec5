"""The node agent's trust boundary: what it decodes, the paths it builds, the files it writes."""

from __future__ import annotations

import asyncio
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from nats.aio.client import Client
from nats.aio.msg import Msg

from limiquantix.api.app import init
from limiquantix.common import nats_auth, subjects
from limiquantix.common import settings as settings_mod
from limiquantix.common.commands import DeleteVm
from limiquantix.common.events import VmDeleted
from limiquantix.common.images import CreateImageRequest
from limiquantix.common.library_tokens import SECRET_FILE
from limiquantix.common.model import utcnow
from limiquantix.common.nats_server import NatsServer
from limiquantix.common.vms import NetworkSpec, PortForward, VmRecord, VmState
from limiquantix.image_library.client import ImageLibraryClient
from limiquantix.node_agent import consumer as consumer_mod
from limiquantix.node_agent.images.cache import ImageCache
from limiquantix.node_agent.vm_files import qemu_gid
from tests.support.disks import make_qcow2, make_qcow2_with_data
from tests.support.images import Library, wait_image
from tests.support.node_agent import AgentHarness, agent_settings, find_domain, running_agent
from tests.support.origin import Origin

TOKEN = "test-token-0123456789"


@pytest.fixture
async def agent(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[AgentHarness]:
    settings = agent_settings(nats_server.url, tmp_path / "node", host_image_dirs=str(tmp_path))
    async with running_agent(nats_server, settings) as h:
        yield h


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """The gateway app on its own production-like NATS (no node needed for a refusal)."""
    nats_dir = tmp_path / "api-nats"
    async with NatsServer(nats_dir / "jetstream", auth_dir=nats_dir) as server:
        app = init(settings_mod.load(
            {}, nats_url=server.url, data_dir=str(tmp_path / "api"), api_token=TOKEN,
            nats_creds=str(server.creds_for(nats_auth.API))))
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            yield client
        finally:
            await client.close()


async def _collect(h: AgentHarness, subject: str) -> list[Msg]:
    seen: list[Msg] = []

    async def keep(msg: Msg) -> None:
        seen.append(msg)
    await h.nc.subscribe(subject, cb=keep)
    await h.nc.flush()
    return seen


async def _until(predicate: object, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_traversal_delete_is_terminated_and_touches_nothing_outside_the_root(
        agent: AgentHarness, tmp_path: Path) -> None:
    """``vm.delete`` of ``../../canary`` on the node's subject: terminated, dead-lettered,
    the directory it names survives, and the agent goes on to handle the next command."""
    canary = tmp_path / "canary"  # data_dir/images/../../canary
    canary.mkdir()
    (canary / "keep").write_text("still here")
    assert (agent.data_dir / "images" / "../../canary").resolve() == canary.resolve()
    consumer = subjects.node_consumer(agent.node_id)
    dead = await _collect(agent, subjects.node_dead_letters(agent.node_id))
    raw = b'{"type":"vm.delete","command_id":"c-1","vm_id":"../../canary"}'
    await agent.js.publish(subjects.node_commands(agent.node_id), raw)
    await agent.js.publish(subjects.node_commands(agent.node_id), b"\xff not json")

    await _until(lambda: len(dead) == 2)
    assert dead[0].data == raw
    assert dead[0].headers is not None and "vm_id" in dead[0].headers["Lq-Reason"]
    assert dead[1].headers is not None and dead[1].headers["Lq-Rejected-Count"] == "2"
    assert (canary / "keep").read_text() == "still here"
    # Terminated, not left to time out: past the ack wait nothing came back.
    await asyncio.sleep(agent.settings.command_ack_wait_s * 1.5)
    assert len(dead) == 2
    info = await agent.js.consumer_info(subjects.COMMANDS_STREAM, consumer)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0
    assert await agent.pending_commands() == 0
    assert agent.task is not None and not agent.task.done()

    vm = await agent.new_vm(make_qcow2(tmp_path / "base.qcow2"))  # the agent still works
    await agent.wait_state(vm.id, VmState.RUNNING)
    await agent.send(DeleteVm(command_id=uuid.uuid4().hex, vm_id=vm.id))
    await agent.wait_event(lambda e: isinstance(e, VmDeleted) and e.vm_id == vm.id)
    assert not agent.vm_dir(vm.id).exists() and (canary / "keep").exists()


async def test_delete_of_an_unknown_vm_removes_nothing(agent: AgentHarness) -> None:
    """A well-formed delete for a VM the cluster does not know leaves its directory alone."""
    stranger = str(uuid.uuid4())
    folder = agent.data_dir / "images" / stranger
    folder.mkdir(parents=True)
    (folder / "disk.qcow2").write_bytes(b"not ours to judge")
    await agent.send(DeleteVm(command_id=uuid.uuid4().hex, vm_id=stranger))
    async with asyncio.timeout(10):
        while await agent.pending_commands():
            await asyncio.sleep(0.02)
    assert (folder / "disk.qcow2").exists()


# -- port forwards: host ports only from LQ_FORWARD_PORT_RANGE ---------------------------------

@pytest.mark.parametrize("host_port", [22, 4222, 8080, 19999, 30000])
async def test_api_refuses_a_forward_host_port_outside_the_range_with_a_hint(
        api: TestClient, host_port: int) -> None:  # type: ignore[type-arg]
    body = {"name": "web-1", "image": "debian-12", "network": {
        "mode": "user", "forwards": [{"guest_port": 80, "host_port": host_port}]}}
    async with api.post("/v1/vms", json=body,
                        headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        problem = await response.json(content_type=None)
    assert response.status == 422, problem
    assert problem["code"] == "forward_port_refused"
    assert "20000-29999" in problem["detail"] and "LQ_FORWARD_PORT_RANGE" in problem["hint"]


async def test_node_refuses_a_forward_outside_the_range_whatever_the_gateway_let_through(
        agent: AgentHarness, tmp_path: Path) -> None:
    network = NetworkSpec(mode="user", forwards=(PortForward(guest_port=80, host_port=8080),))
    vm = await agent.new_vm(make_qcow2(tmp_path / "base.qcow2"), network=network)
    record = await agent.wait_state(vm.id, VmState.ERROR)
    assert record.error is not None and record.error.code == "forward_port_refused"
    assert find_domain(vm.id) is None


async def test_free_forward_ports_are_picked_inside_the_configured_range(
        agent: AgentHarness, tmp_path: Path) -> None:
    await agent.shutdown()
    await agent.start(forward_port_range="24100-24103")
    network = NetworkSpec(mode="user", forwards=(PortForward(guest_port=80),
                                                 PortForward(guest_port=443, host_port=24103)))
    vm = await agent.new_vm(make_qcow2(tmp_path / "base.qcow2"), network=network)
    record = await agent.wait_state(vm.id, VmState.RUNNING)
    ports = [f.host_port for f in record.forwards]
    assert len(ports) == 3 and len(set(ports)) == 3 and ports[2] == 24103
    assert all(24100 <= port <= 24103 for port in ports)


# -- guests do not reach the host: user mode is restricted unless the node opts in -------------

async def test_user_mode_vm_is_restricted_to_its_forwards_by_default(
        agent: AgentHarness, tmp_path: Path) -> None:
    vm = await agent.new_vm(make_qcow2(tmp_path / "base.qcow2"), network=NetworkSpec(mode="user"))
    await agent.wait_state(vm.id, VmState.RUNNING)
    xml = (agent.vm_dir(vm.id) / "domain.xml").read_text()
    assert "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:" in xml


async def test_outbound_user_networking_is_an_explicit_node_setting(
        agent: AgentHarness, tmp_path: Path) -> None:
    await agent.shutdown()
    await agent.start(user_network_outbound=True)
    base = make_qcow2(tmp_path / "base.qcow2")
    user = await agent.new_vm(base, network=NetworkSpec(mode="user"))
    isolated = await agent.new_vm(base, network=NetworkSpec(mode="isolated"))
    for vm in (user, isolated):
        await agent.wait_state(vm.id, VmState.RUNNING)
    assert "restrict=on" not in (agent.vm_dir(user.id) / "domain.xml").read_text()
    assert "restrict=on" in (agent.vm_dir(isolated.id) / "domain.xml").read_text()


# -- files holding guest data or secrets are not world-readable -------------------------------

def _mode_and_group(path: Path) -> tuple[int, int]:
    st = path.stat()
    return stat.S_IMODE(st.st_mode), st.st_gid


def _shared_with_qemu(path: Path, *, directory: bool = False) -> None:
    """0640/0750 with the QEMU user's group when the host has one, else 0600/0700."""
    gid = qemu_gid()
    mode, group = _mode_and_group(path)
    if gid is None:
        assert mode == (0o700 if directory else 0o600), (path, oct(mode))
    else:
        assert (mode, group) == (0o750 if directory else 0o640, gid), (path, oct(mode), group)


async def test_vm_files_are_readable_by_qemu_only(agent: AgentHarness, tmp_path: Path) -> None:
    """seed.iso holds the password hash and user-data; the overlay the guest's disk."""
    vm = await agent.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await agent.wait_state(vm.id, VmState.RUNNING)
    folder = agent.vm_dir(vm.id)
    for name in ("disk.qcow2", "seed.iso", "domain.xml"):
        _shared_with_qemu(folder / name)
    for directory in (folder, folder.parent):
        _shared_with_qemu(directory, directory=True)


async def test_cached_and_library_images_are_not_world_readable(
    tmp_path: Path, nc: Client, library: Library, client: ImageLibraryClient, origin: Origin,
) -> None:
    make_qcow2_with_data(origin.root / "private.qcow2", mib=1)
    record = await client.import_image(
        CreateImageRequest(source_url=origin.file_url("private.qcow2")))
    active = await wait_image(client, record.id, "active", "error")
    assert active.state == "active", active.error
    for directory in (library.store, library.store / "files", library.store / "partial"):
        assert _mode_and_group(directory)[0] == 0o700
    assert _mode_and_group(library.store / "files" / record.id)[0] == 0o600

    settings = settings_mod.load(
        {}, data_dir=str(tmp_path / "node"), node_id="node-t",
        image_library_url=library.url,
        image_library_secret_file=str(Path(library.settings.data_dir) / SECRET_FILE))
    cache = ImageCache(settings, nc, nc.jetstream())
    local = await cache.ensure(record.id)
    _shared_with_qemu(local.path)  # a VM's backing file: QEMU reads it
    _shared_with_qemu(cache.root, directory=True)
    assert _mode_and_group(cache.root / f"{active.sha256}.json")[0] == 0o600


async def test_a_command_whose_handling_keeps_failing_is_dropped_after_bounded_retries(
        agent: AgentHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure cannot be recorded (here: a failpoint after the work): retried with a delay
    MAX_DELIVERIES times, then terminated and dead-lettered; the agent keeps running."""
    monkeypatch.setattr(consumer_mod, "RETRY_DELAY_S", 0.1)
    await agent.shutdown()
    await agent.start(failpoints="before_ack=error")
    dead = await _collect(agent, subjects.node_dead_letters(agent.node_id))
    vm = await agent.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await _until(lambda: len(dead) == 1, timeout_s=30)
    assert dead[0].headers is not None
    assert f"failed {consumer_mod.MAX_DELIVERIES} times" in dead[0].headers["Lq-Reason"]
    assert (await agent.store.get(vm.id))[0].state == VmState.RUNNING  # the work itself was done
    assert await agent.pending_commands() == 0
    assert agent.task is not None and not agent.task.done()


async def test_a_stored_record_whose_id_is_a_path_is_never_acted_on(
        agent: AgentHarness, tmp_path: Path) -> None:
    """A record in the bucket (key a valid UUID) claiming ``id: ../../canary`` on this node:
    the agent restarts, reconciles, and touches nothing outside its root."""
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "domain.xml").write_text("<domain/>")
    now = utcnow()
    forged = VmRecord(id="../../canary", name="forged", node=agent.node_id, image="x",
                      vcpus=1, memory_mib=64, disk_gib=1, state=VmState.RUNNING,
                      created_at=now, updated_at=now)
    kv = await agent.js.key_value(subjects.VMS_BUCKET)
    await kv.put(str(uuid.uuid4()), msgspec.json.encode(forged))
    await agent.shutdown()
    await agent.start()
    vm = await agent.new_vm(make_qcow2(tmp_path / "base.qcow2"))
    await agent.wait_state(vm.id, VmState.RUNNING)
    assert sorted(p.name for p in canary.iterdir()) == ["domain.xml"]
