"""NATS refuses anonymous clients, and each identity can do only its own part (issue 10 row 1).

A real nats-server configured as lq-local configures it (the root ``nats_server`` fixture). A
denied publish reaches the client as an asynchronous permissions error and never lands in a
stream; a denied JetStream API request gets no answer (the request times out).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig

from limiquantix.common import nats_auth, nats_client, subjects
from limiquantix.common.nats_server import NatsServer
from limiquantix.local.stack import Stack

DENIED_WAIT_S = 0.5  # a denied JetStream API request is never answered
HEARTBEAT_S = 1.0


class Session:
    """One connection as one identity, with the permission errors the server sent it."""

    def __init__(self, nc: Client, errors: list[Exception]) -> None:
        self.nc, self.errors = nc, errors

    async def denied(self, what: str) -> bool:
        """Whether the server refused ``what`` (a subject) to this connection."""
        await self.nc.flush()
        for _ in range(50):  # nats-py reports the server's -ERR in lower case
            if any(what.lower() in str(e).lower() for e in self.errors):
                return True
            await asyncio.sleep(0.01)
        return False


AsIdentity = Callable[[str], Awaitable[Session]]


@pytest.fixture
async def as_identity(nats_server: NatsServer) -> AsyncIterator[AsIdentity]:
    """``await as_identity("node-node-a")``: a connection with that identity's seed."""
    sessions: list[Session] = []

    async def connect(identity: str) -> Session:
        if identity.startswith("node-"):
            await nats_server.add_node(identity.removeprefix("node-"))
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            errors.append(exc)

        nc = await nats.connect(**nats_server.connect_options(identity), error_cb=on_error,
                                allow_reconnect=False)
        session = Session(nc, errors)
        sessions.append(session)
        return session

    async with nats_client.connect(nats_server.url, name="setup",
                                   creds=str(nats_server.creds_for(nats_auth.API))) as setup:
        await nats_client.ensure_jetstream(setup.jetstream(), heartbeat_interval_s=HEARTBEAT_S)
    yield connect
    for session in sessions:
        await session.nc.close()


async def commands_queued(gateway: Session, node_id: str) -> int:
    info = await gateway.nc.jetstream().stream_info(subjects.COMMANDS_STREAM,
                                                    subjects_filter=subjects.node_commands(node_id))
    return sum((info.state.subjects or {}).values())


async def test_an_anonymous_connection_is_refused(nats_server: NatsServer) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(nats_server.url, allow_reconnect=False, connect_timeout=2,
                           error_cb=_ignore)


async def test_a_key_the_server_does_not_know_is_refused(nats_server: NatsServer) -> None:
    stranger = nats_auth.new_seed()
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(nats_server.url, nkeys_seed_str=stranger, allow_reconnect=False,
                           connect_timeout=2, error_cb=_ignore)


async def _ignore(exc: Exception) -> None:
    """The refusal is what these tests expect; nats-py would log it as an error."""


async def test_the_gateway_publishes_commands(as_identity: AsIdentity) -> None:
    gateway: Session = await as_identity(nats_auth.API)
    ack = await gateway.nc.jetstream().publish(subjects.node_commands("node-a"), b"{}")
    assert ack.stream == subjects.COMMANDS_STREAM
    assert await commands_queued(gateway, "node-a") == 1


async def test_a_node_cannot_publish_commands_for_another_node_or_itself(
        as_identity: AsIdentity) -> None:
    gateway: Session = await as_identity(nats_auth.API)
    node_a: Session = await as_identity("node-node-a")
    await as_identity("node-node-b")
    for target in ("node-b", "node-a"):
        await node_a.nc.publish(subjects.node_commands(target), b'{"type":"vm.delete"}')
        assert await node_a.denied(f'publish to "{subjects.node_commands(target)}"')
        assert await commands_queued(gateway, target) == 0


async def test_a_node_cannot_consume_another_nodes_commands(
        as_identity: AsIdentity) -> None:
    gateway: Session = await as_identity(nats_auth.API)
    node_a: Session = await as_identity("node-node-a")
    js = node_a.nc.jetstream(timeout=DENIED_WAIT_S)
    await gateway.nc.jetstream().publish(subjects.node_commands("node-b"), b"{}")
    theirs = subjects.node_consumer("node-b")
    with pytest.raises(nats.errors.TimeoutError):  # node-b's consumer, node-b's filter
        await js.add_consumer(subjects.COMMANDS_STREAM, ConsumerConfig(
            name=theirs, durable_name=theirs, filter_subject=subjects.node_commands("node-b"),
            ack_policy=AckPolicy.EXPLICIT))
    mine = subjects.node_consumer("node-a")
    with pytest.raises(nats.errors.TimeoutError):  # its own consumer name, node-b's filter
        await js.add_consumer(subjects.COMMANDS_STREAM, ConsumerConfig(
            name=mine, durable_name=mine, filter_subject=subjects.node_commands("node-b"),
            ack_policy=AckPolicy.EXPLICIT))
    next_b = f"$JS.API.CONSUMER.MSG.NEXT.{subjects.COMMANDS_STREAM}.{theirs}"
    await node_a.nc.publish(next_b, b"1", reply=node_a.nc.new_inbox())
    assert await node_a.denied(next_b)
    assert await commands_queued(gateway, "node-b") == 1  # still there, for node-b


async def test_a_node_consumes_and_acks_its_own_commands(
        as_identity: AsIdentity) -> None:
    gateway: Session = await as_identity(nats_auth.API)
    node_a: Session = await as_identity("node-node-a")
    await gateway.nc.jetstream().publish(subjects.node_commands("node-a"), b"{}")
    durable = subjects.node_consumer("node-a")
    js = node_a.nc.jetstream()
    await js.add_consumer(subjects.COMMANDS_STREAM, ConsumerConfig(
        name=durable, durable_name=durable, filter_subject=subjects.node_commands("node-a"),
        ack_policy=AckPolicy.EXPLICIT))
    sub = await js.pull_subscribe_bind(durable=durable, stream=subjects.COMMANDS_STREAM)
    (msg,) = await sub.fetch(1, timeout=5)
    await msg.ack_sync()
    assert not node_a.errors
    assert await commands_queued(gateway, "node-a") == 0


async def test_a_node_writes_only_its_own_heartbeat_key(
        as_identity: AsIdentity) -> None:
    gateway: Session = await as_identity(nats_auth.API)
    node_a: Session = await as_identity("node-node-a")
    nodes = await node_a.nc.jetstream(timeout=DENIED_WAIT_S).key_value(subjects.NODES_BUCKET)
    await nodes.put("node-a", b"{}")
    with pytest.raises(nats.errors.TimeoutError):
        await nodes.put("node-b", b"{}")  # a fake node, to be placed VMs on: refused
    assert await node_a.denied(f'"$KV.{subjects.NODES_BUCKET}.node-b"')
    view = await gateway.nc.jetstream().key_value(subjects.NODES_BUCKET)
    assert sorted(await view.keys()) == ["node-a"]


async def test_a_node_reads_neither_idempotency_keys_nor_console_tickets(
        as_identity: AsIdentity) -> None:
    node_a: Session = await as_identity("node-node-a")
    js = node_a.nc.jetstream(timeout=DENIED_WAIT_S)
    for bucket in (subjects.IDEMPOTENCY_BUCKET, subjects.CONSOLE_TOKENS_BUCKET,
                   subjects.IMAGES_BUCKET):
        with pytest.raises(nats.errors.TimeoutError):
            await js.key_value(bucket)


async def test_no_one_reads_another_identitys_replies(
        as_identity: AsIdentity) -> None:
    """The gateway's KV reads come back on its inbox; a node may not subscribe there."""
    node_a: Session = await as_identity("node-node-a")
    library: Session = await as_identity(nats_auth.IMAGE_LIBRARY)
    for session in (node_a, library):
        await session.nc.subscribe("_INBOX.>")
        assert await session.denied('subscription to "_INBOX.>"')


async def test_the_image_library_neither_commands_nodes_nor_writes_vms(
        as_identity: AsIdentity) -> None:
    library: Session = await as_identity(nats_auth.IMAGE_LIBRARY)
    for subject in (subjects.node_commands("node-a"), f"$KV.{subjects.VMS_BUCKET}.x",
                    subjects.vm_event("x", "deleted")):
        await library.nc.publish(subject, b"{}")
        assert await library.denied(f'publish to "{subject}"')


async def test_seeds_are_private_and_survive_a_restart(tmp_path: Path) -> None:
    auth = tmp_path / "auth"
    async with NatsServer(tmp_path / "js", auth_dir=auth, nodes=("node-a",)) as server:
        first = dict(server.users)
        seed = server.creds_for_node("node-a")
    assert seed.stat().st_mode & 0o777 == 0o600
    assert all(p.stat().st_mode & 0o077 == 0 for p in auth.iterdir())
    async with NatsServer(tmp_path / "js", auth_dir=auth, nodes=("node-a",)) as server:
        assert server.users == first
        nc = await nats.connect(**server.connect_options("node-node-a"))
        await nc.close()


def test_a_seed_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "api.nk"
    nats_auth.write_seed(path, nats_auth.new_seed())
    path.chmod(0o644)
    with pytest.raises(nats_auth.NatsAuthError, match="chmod 600"):
        nats_client.credentials(str(path))


@pytest.mark.stack
async def test_lq_local_gives_each_service_only_its_own_credentials(stack: Stack) -> None:
    environments = {name: _environ(service.process.pid)
                    for name, service in stack.services.items() if service.process}
    node = environments["node-node-a"]
    assert node["LQ_NATS_CREDS"] == str(stack.nats.creds_for_node("node-a"))
    assert "LQ_API_TOKEN" not in node, "a node agent does not need the API's master token"
    assert environments["api"]["LQ_NATS_CREDS"] == str(stack.nats.creds_for(nats_auth.API))
    assert "LQ_API_TOKEN" not in environments["image-library"]
    assert (environments["image-library"]["LQ_NATS_CREDS"]
            == str(stack.nats.creds_for(nats_auth.IMAGE_LIBRARY)))
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(stack.nats_url, allow_reconnect=False, connect_timeout=2,
                           error_cb=_ignore)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode() for k, v in pairs}



def _certificates(root: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 it signed: (ca.crt, tls.crt, tls.key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test-ca")).issuer_name(name("test-ca"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now)
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("nats")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = root / "ca.crt", root / "tls.crt", root / "tls.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


async def test_over_tls_a_service_verifies_the_server_with_its_ca(tmp_path: Path) -> None:
    """What deploy/ runs: TLS plus identities; a client without the CA cannot connect."""
    ca, cert, key = _certificates(tmp_path)
    async with NatsServer(tmp_path / "js", auth_dir=tmp_path / "auth", tls=(cert, key)) as server:
        creds = str(server.creds_for(nats_auth.API))
        async with nats_client.connect(server.url, name="tls", creds=creds,
                                       ca_file=str(ca)) as nc:
            await nats_client.ensure_jetstream(nc.jetstream(), heartbeat_interval_s=HEARTBEAT_S)
            assert nc.is_connected
        with pytest.raises(ssl.SSLCertVerificationError):
            await nats.connect(server.url, allow_reconnect=False, connect_timeout=2,
                               error_cb=_ignore, **nats_client.credentials(creds))


async def test_the_gateway_cannot_fake_a_heartbeat_or_an_image(as_identity: AsIdentity) -> None:
    gateway = await as_identity(nats_auth.API)
    for subject in (f"$KV.{subjects.NODES_BUCKET}.node-x", f"$KV.{subjects.IMAGES_BUCKET}.x"):
        await gateway.nc.publish(subject, b"{}")
        assert await gateway.denied(f'publish to "{subject}"')


async def test_a_node_cannot_inject_a_command_through_a_consumers_deliver_subject(
        as_identity: AsIdentity) -> None:
    """NATS does not check a push consumer's deliver subject against permissions: a node that
    writes a command-shaped record and points a consumer of lq_vms at another node's command
    subject must still not get it into LQ_COMMANDS (nothing subscribes there but the stream)."""
    gateway = await as_identity(nats_auth.API)
    node_a = await as_identity("node-node-a")
    js = node_a.nc.jetstream()
    records = await js.key_value(subjects.VMS_BUCKET)
    await records.put("forged", b'{"type": "vm.delete", "vm_id": "forged"}')
    stream = nats_client.kv_stream(subjects.VMS_BUCKET)
    info = await js.add_consumer(stream, ConsumerConfig(
        deliver_subject=subjects.node_commands("node-b")))
    await asyncio.sleep(1.0)  # an absence: wait several delivery attempts' worth, then look
    consumer = await gateway.nc.jetstream().consumer_info(stream, info.name)
    assert consumer.delivered.stream_seq == 0
    assert await commands_queued(gateway, "node-b") == 0
