"""The node agent: ``lq-node-agent`` (one per host).

One AsyncExitStack holds libvirt (libvirtaio registered first, inside the loop), NATS and the RPC
responder; one TaskGroup runs the command consumer, the heartbeat, reconciliation (once before
consuming, then periodically), the libvirt event follower and connection supervisor (reconnect,
then reconcile), the record view and guest watchers.
SIGTERM: stop consuming, let commands in flight finish (or leave them to redelivery), withdraw
the heartbeat, announce the node offline, drain NATS, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog
from nats.aio.client import Client

from limiquantix.common import nats_client, subjects
from limiquantix.common.events import NodeStateChanged
from limiquantix.common.metrics import serving as metrics_serving
from limiquantix.common.runner import run_service
from limiquantix.common.settings import Settings
from limiquantix.common.vm_store import VmStore
from limiquantix.node_agent import reconcile
from limiquantix.node_agent.consumer import SHUTDOWN_GRACE_S, CommandConsumer
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.failpoints import Failpoints
from limiquantix.node_agent.guest_agent import GuestAgents
from limiquantix.node_agent.guest_ops import GuestOps
from limiquantix.node_agent.guest_watch import GuestWatch
from limiquantix.node_agent.heartbeat import Heartbeat
from limiquantix.node_agent.host_checks import host_warnings
from limiquantix.node_agent.images.cache import ImageCache
from limiquantix.node_agent.images.source import ImageSource
from limiquantix.node_agent.libvirt_events import register_event_loop
from limiquantix.node_agent.libvirt_host import LibvirtHost
from limiquantix.node_agent.overlay import OverlayFactory
from limiquantix.node_agent.queries import NodeRpc
from limiquantix.node_agent.record_view import NodeRecords, local_vm_ids
from limiquantix.node_agent.recorder import Recorder
from limiquantix.node_agent.virt_probe import virt_type
from limiquantix.node_agent.vm_locks import VmActivity

log = structlog.get_logger()

RECORD_VIEW_TIMEOUT_S = 30.0
CONSUMER_STOP_S = SHUTDOWN_GRACE_S + 2.0
CANCEL_AGAIN_S = 1.0
OFFLINE_NOTICE_S = 3.0
OVERLAY_TEMPLATES = "overlay-templates"


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the node agent until ``stop`` is set."""
    node_id = settings.effective_node_id
    kind = virt_type(settings)
    structlog.contextvars.bind_contextvars(node_id=node_id)
    failpoints = Failpoints(settings.failpoints)
    if failpoints:
        log.warning("FAILPOINTS ENABLED (tests only)", failpoints=settings.failpoints)
    async with contextlib.AsyncExitStack() as stack:
        register_event_loop()
        host = await stack.enter_async_context(
            LibvirtHost.open(settings.libvirt_uri, retry_s=settings.transient_retry_s))
        nc = await stack.enter_async_context(
            nats_client.connect(settings.nats_url, name=f"node-agent-{node_id}",
                                creds=settings.nats_creds, ca_file=settings.nats_ca_file))
        js = nc.jetstream()
        await nats_client.wait_for_jetstream(
            js, (*nats_client.NODE_STREAMS, nats_client.kv_stream(subjects.ALLOCATIONS_BUCKET)))
        vms = await nats_client.bucket(js, subjects.VMS_BUCKET)
        store = VmStore(vms, await nats_client.bucket(js, subjects.VM_NAMES_BUCKET))
        recorder = Recorder(js, store, node_id, retry_s=settings.transient_retry_s)
        cache = ImageCache(settings, nc, js)
        stack.push_async_callback(cache.close)  # cancels downloads in flight when we stop
        await cache.remove_orphaned_partials()  # a killed run's downloads: none is in flight
        ctx = AgentContext(
            settings=settings, node_id=node_id, virt_type=kind,
            host=host, store=store, recorder=recorder,
            images=ImageSource(cache, settings.host_image_roots), activity=VmActivity(),
            guests=GuestWatch(recorder, enabled=kind != "test", ssh_host=settings.console_host),
            failpoints=failpoints,
            overlays=OverlayFactory(settings.data_path / OVERLAY_TEMPLATES),
        )
        await asyncio.to_thread(ctx.overlays.reset)
        records = NodeRecords(js, node_id, local=local_vm_ids(settings.data_path))
        heartbeat = Heartbeat(settings, await nats_client.bucket(js, subjects.NODES_BUCKET),
                              records, node_id=node_id, virt_type=kind,
                              warnings=await host_warnings(host), live_warnings=host.warnings)
        host.on_change(heartbeat.nudge)  # libvirt lost or back: say so at once
        await stack.enter_async_context(
            NodeRpc(store, node_id=node_id, data_dir=settings.data_path).serving(nc))
        await stack.enter_async_context(GuestOps(host, store, node_id=node_id).serving(nc))
        await stack.enter_async_context(
            metrics_serving(settings.node_metrics_host, settings.node_metrics_port))
        log.info("node agent starting", libvirt_uri=settings.libvirt_uri, virt_type=kind,
                 data_dir=settings.data_dir)
        try:
            await _run(ctx, nc, records, heartbeat, stop)
        finally:
            await heartbeat.remove()
            with contextlib.suppress(Exception):  # best effort, bounded: we are stopping
                await asyncio.wait_for(
                    recorder.publish(NodeStateChanged(node=node_id, online=False)),
                    OFFLINE_NOTICE_S)
            log.info("node agent stopping")


async def _run(ctx: AgentContext, nc: Client, records: NodeRecords, heartbeat: Heartbeat,
               stop: asyncio.Event) -> None:
    async with asyncio.TaskGroup() as group:
        ctx.guests.bind(group)
        background = [group.create_task(records.run())]
        try:
            await _serve_commands(ctx, nc, records, heartbeat, stop, group, background)
        except asyncio.CancelledError:
            # Cancelled from outside (a crash, as the tests make one): the TaskGroup would
            # cancel each task once and wait for ever for one that lost its cancel (below).
            await cancel_until_done(background, also=ctx.guests.cancel_all)
            raise


async def _serve_commands(ctx: AgentContext, nc: Client, records: NodeRecords,
                          heartbeat: Heartbeat, stop: asyncio.Event, group: asyncio.TaskGroup,
                          background: list[asyncio.Task[None]]) -> None:
    """Start the node's work in ``group`` (each task added to ``background``), consume
    commands until ``stop``, then stop it all."""
    await asyncio.wait_for(records.ready.wait(), RECORD_VIEW_TIMEOUT_S)
    await reconcile.reconcile_once(ctx, records)
    await heartbeat.beat()
    await ctx.recorder.publish(NodeStateChanged(node=ctx.node_id, online=True))
    background += [
        group.create_task(heartbeat.run()),
        group.create_task(reconcile.run_periodic(ctx, records)),
        group.create_task(reconcile.follow_events(ctx, records)),
        *_guest_agent_tasks(group, GuestAgents(ctx, records.vm_for_domain, records.all)),
        # Events were missed while libvirt was away: reconcile once it is back.
        group.create_task(ctx.host.supervise(lambda: reconcile.reconcile_once(ctx, records))),
    ]
    consumer = group.create_task(CommandConsumer(
        ctx, nc.jetstream(), nc, on_command=records.follow_vm).run(stop))
    background.append(consumer)  # a crash cancels it with the rest
    log.info("node agent ready")
    await stop.wait()
    log.info("node agent stopping: consumer winding down")
    try:  # a stop is bounded: the consumer's own grace, then it is cancelled
        await asyncio.wait_for(asyncio.shield(consumer), CONSUMER_STOP_S)
    except TimeoutError:
        log.warning("command consumer did not stop in time; cancelled (JetStream "
                    "redelivers what it held)")
        consumer.cancel()
    await cancel_until_done(background, also=ctx.guests.cancel_all)


async def cancel_until_done(tasks: list[asyncio.Task[None]], *,
                            also: Callable[[], None] = lambda: None,
                            every_s: float = CANCEL_AGAIN_S) -> None:
    """Cancel ``tasks`` (and call ``also``) again every ``every_s`` until each has ended.

    One cancel is not always enough on Python 3.11: ``asyncio.wait_for`` (used inside nats-py's
    requests too) drops a cancel that lands in the step in which its wait completed, and a
    loop that lost it runs on; the agent's TaskGroup then waited for it for ever (seen in CI as
    a node agent that did not stop within 30 s, once in ~900 tests).
    """
    pending = {task for task in tasks if not task.done()}
    while True:
        for task in pending:
            task.cancel()
        also()
        if not pending:
            return
        _, pending = await asyncio.wait(pending, timeout=every_s)


def _guest_agent_tasks(group: asyncio.TaskGroup,
                       agents: GuestAgents) -> list[asyncio.Task[None]]:
    """Follow guest agents: libvirt's (dis)connect events, and a periodic re-read."""
    return [group.create_task(agents.follow_events()), group.create_task(agents.run_periodic())]


def main() -> None:
    """Console script ``lq-node-agent``."""
    run_service("node-agent", serve,
                "The Limiquantix node agent: runs this host's VMs (libvirt, qemu-img, seeds).")
