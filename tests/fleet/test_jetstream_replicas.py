"""LQ_JETSTREAM_REPLICAS: every stream and bucket gets that many copies, set-up stays idempotent,
and a single-replica deployment is upgraded to three in place, its data and consumers kept."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from limiquantix.common import nats_auth, nats_client, retry, subjects
from limiquantix.common.nats_server import NatsCluster, NatsServer

ALL_STREAMS = (
    subjects.COMMANDS_STREAM, subjects.EVENTS_STREAM,
    nats_client.object_stream(subjects.IMAGE_FILES_BUCKET),
    *(nats_client.kv_stream(c.bucket)
      for c in nats_client.bucket_configs(heartbeat_interval_s=1.0)),
)


async def _replicas(js: nats.js.JetStreamContext) -> dict[str, int]:
    return {s: (await js.stream_info(s)).config.num_replicas or 1 for s in ALL_STREAMS}


async def test_one_server_gets_single_replica_streams_and_set_up_twice_changes_nothing(
        nats_server: NatsServer) -> None:
    nc = await nats.connect(**nats_server.connect_options(nats_auth.API))
    js = nc.jetstream()
    try:
        await nats_client.ensure_jetstream(js, heartbeat_interval_s=1.0, replicas=1)
        created = {s: (await js.stream_info(s)).created for s in ALL_STREAMS}
        await nats_client.ensure_jetstream(js, heartbeat_interval_s=1.0, replicas=1)
        assert await _replicas(js) == dict.fromkeys(ALL_STREAMS, 1)
        assert {s: (await js.stream_info(s)).created for s in ALL_STREAMS} == created
        # Room for a fleet's consumers on every stream and bucket (the server's default is
        # 1,000), and a set-up run again does not take it back.
        fleet = [s for s in ALL_STREAMS if s != nats_client.object_stream(
            subjects.IMAGE_FILES_BUCKET)]
        limits = {s: (await js.stream_info(s)).config.max_consumers for s in fleet}
        assert limits == dict.fromkeys(fleet, nats_client.MAX_CONSUMERS)
    finally:
        await nc.close()


async def test_single_replica_deployment_is_upgraded_to_three_in_place(
        nats_cluster: NatsCluster) -> None:
    """A cluster whose streams were laid out with one replica (LQ_JETSTREAM_REPLICAS=1): the
    gateway's next set-up with 3 copies everything to the other servers -- records, queued
    commands and the node's durable consumer kept."""
    durable = subjects.node_consumer("node-a")
    nc = await nats.connect(**nats_cluster.connect_options(nats_auth.API))
    js = nc.jetstream(timeout=5.0)
    try:
        await nats_client.ensure_jetstream(js, heartbeat_interval_s=1.0, replicas=1)
        assert await _replicas(js) == dict.fromkeys(ALL_STREAMS, 1)
        vms = await js.key_value(subjects.VMS_BUCKET)
        for i in range(20):
            await vms.put(f"vm-{i}", b"record %d" % i)
        await js.add_consumer(subjects.COMMANDS_STREAM, ConsumerConfig(
            durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
            filter_subject=subjects.node_commands("node-a")))
        await js.publish(subjects.node_commands("node-a"), b"queued",
                         stream=subjects.COMMANDS_STREAM)

        started = time.monotonic()
        await nats_client.ensure_jetstream(js, heartbeat_interval_s=1.0, replicas=3)
        upgrade_s = time.monotonic() - started
        assert await _replicas(js) == dict.fromkeys(ALL_STREAMS, 3)
        await nats_client.ensure_jetstream(js, heartbeat_interval_s=1.0, replicas=3)
        assert await _replicas(js) == dict.fromkeys(ALL_STREAMS, 3)  # idempotent

        # Nothing lost, and the node's durable consumer followed its stream to 3 copies.
        assert [(await vms.get(f"vm-{i}")).value for i in range(20)] == [
            b"record %d" % i for i in range(20)]
        consumer = await js.consumer_info(subjects.COMMANDS_STREAM, durable)
        assert consumer.num_pending == 1
        assert nats_client.copies(consumer.cluster) == 3
        await _wait_all_current(nats_cluster)

        # Three copies: the cluster keeps serving with any one server gone (here the leader of
        # the VM records); services ride the election out with retry.py.
        leader = await nats_cluster.stream_leader(nats_client.kv_stream(subjects.VMS_BUCKET))
        await nats_cluster.member(leader).kill()
        got = await retry.retry_transient(lambda: vms.get("vm-7"), what="kv get",
                                          deadline_s=20)
        assert got.value == b"record 7"
        await retry.retry_transient(lambda: vms.put("vm-after", b"one server down"),
                                    what="kv put", deadline_s=20)
        sub = await js.pull_subscribe_bind(durable, stream=subjects.COMMANDS_STREAM)
        (command,) = await retry.retry_transient(lambda: sub.fetch(1, timeout=2),
                                                 what="fetch", deadline_s=20)
        assert command.data == b"queued"
        print(f"\nreplicas 1 -> 3 in place: set-up {upgrade_s:.2f} s")
    finally:
        await nc.close()


async def test_a_fresh_cluster_takes_the_first_write_to_every_bucket_once_set_up_returns(
        nats_cluster: NatsCluster) -> None:
    """Created is not yet writable: a replicated stream answers its info a moment before its
    replicas have elected a leader, and a write then gets "no responders" (CI saw the image
    library's first catalog write fail so). Set-up, and the services' wait, return only once
    every stream has a leader, so the very next write -- without any retry -- is stored."""
    nc = await nats.connect(**nats_cluster.connect_options(nats_auth.API))
    js = nc.jetstream(timeout=5.0)
    try:
        await nats_client.ensure_jetstream(js, heartbeat_interval_s=1.0, replicas=3)
        for stream in ALL_STREAMS:
            assert (await js.stream_info(stream)).cluster.leader
        assert await (await js.key_value(subjects.VMS_BUCKET)).create("vm-1", b"stored") >= 1
        # The image library's start, as in CI: wait, then write the catalog at once.
        library = await nats.connect(**nats_cluster.connect_options(nats_auth.IMAGE_LIBRARY))
        try:
            library_js = library.jetstream(timeout=5.0)
            await nats_client.wait_for_jetstream(library_js, nats_client.IMAGE_LIBRARY_STREAMS,
                                                 timeout_s=5)
            images = await library_js.key_value(subjects.IMAGES_BUCKET)
            assert await images.create("debian-12", b"stored") >= 1
        finally:
            await library.close()
    finally:
        await nc.close()


async def _wait_all_current(cluster: NatsCluster, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not all([await cluster.healthy(m) for m in cluster.members]):
        assert time.monotonic() < deadline, "replicas did not catch up"
        await asyncio.sleep(0.1)


pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]
