"""The node's command consumer: a durable JetStream pull consumer on its own subject.

- Work for one VM runs in arrival order; different VMs run in parallel (at most
  ``MAX_PARALLEL``); at most ``MAX_HELD`` messages are held (fetched, not yet acked).
- Every held message (running or queued behind another command of its VM) gets an in-progress
  ack every third of ``ack_wait``, so long work is not redelivered while it runs.
- A message is acked only after its work is done, including when the work failed (the failure
  is recorded on the VM: a bad command is never redelivered forever).
- A message that does not decode (unknown type, an id of the wrong shape such as
  ``../../x``, not JSON) is a poison message: it is *terminated* (JetStream never redelivers
  it), counted, logged with its reason and republished with the reason on the node's
  dead-letter subject ``lq.dlq.cmd.<node>``; when it names a valid VM id, the failure is
  recorded on that VM. Nothing of it reaches a handler, and nothing about it stops the agent.
- A command whose handling itself fails (its failure could not even be recorded: NATS or the
  store unavailable) is nak'ed with a delay and tried again, at most ``MAX_DELIVERIES`` times,
  then terminated and dead-lettered like a poison message; the agent keeps running.
- On stop: no more fetching; running commands get ``SHUTDOWN_GRACE_S`` to finish; queued ones
  are nak'ed, unfinished ones abandoned: JetStream redelivers them to the next agent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from limiquantix.common import subjects
from limiquantix.common.commands import Command, command_decoder
from limiquantix.common.ids import is_vm_id
from limiquantix.common.metrics import CONSUMER_PENDING, CONSUMER_REDELIVERIES
from limiquantix.common.model import Model
from limiquantix.common.publish import dead_letter
from limiquantix.common.retry import retry_transient
from limiquantix.common.vms import VmError
from limiquantix.node_agent import metrics as node_metrics
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.dispatch import handle, record_failure

log = structlog.get_logger()

MAX_PARALLEL = 16
MAX_HELD = 256
# One message per pull: nats-py's fetch(batch=N) returns a lone message that arrives during its
# long poll only when the poll expires (up to FETCH_TIMEOUT_S later); batch=1 returns at once.
# A backlog then costs one round trip (~0.3 ms) a command, far below the work a command does.
FETCH_BATCH = 1
# The long poll: a command returns it at once, so a longer poll costs no latency and an idle
# agent pulls 5x less often (issue 16). Its one cost: a poll parked on a NATS server that dies
# is noticed only when it expires, so after a failover the next command may wait up to this.
FETCH_TIMEOUT_S = 5.0
SHUTDOWN_GRACE_S = 10.0
SUBSCRIBE_RETRY_S = 120.0
ACK_TIMEOUT_S = 5.0
MAX_DELIVERIES = 5  # of a command whose handling raised, before it is terminated
RETRY_DELAY_S = 2.0


class _Envelope(Model, frozen=True, kw_only=True):
    """Just enough of an undecodable command to say which VM it was for."""

    vm_id: str = ""
    type: str = ""


class CommandConsumer:
    """Fetches this node's commands and runs them (see the module docstring)."""

    def __init__(self, ctx: AgentContext, js: JetStreamContext, nc: Client, *,
                 on_command: Callable[[str], None] = lambda vm_id: None) -> None:
        self._ctx = ctx
        self._on_command = on_command  # the record view follows the VMs commanded here
        self._js = js
        self._nc = nc
        self.rejected = 0  # poison messages terminated since start
        self._held: dict[int, Msg] = {}  # stream sequence -> latest delivery
        self._queues: dict[str, deque[tuple[int, Command]]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_PARALLEL)
        self._room = asyncio.Event()
        self._stopping = False

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        node = self._ctx.node_id
        durable = subjects.node_consumer(node)
        config = ConsumerConfig(
            name=durable, durable_name=durable, filter_subject=subjects.node_commands(node),
            ack_policy=AckPolicy.EXPLICIT, ack_wait=self._ctx.settings.command_ack_wait_s,
            deliver_policy=DeliverPolicy.ALL, max_ack_pending=MAX_HELD * 4, max_deliver=-1,
        )
        # Create, or update in place (ack_wait may have changed since the last start). A NATS
        # server dying at this moment (a leader election) is ridden out, not a crash of the
        # agent (seen: lq-local --nats-cluster 3 with a server killed as the agent started).
        await retry_transient(lambda: self._js.add_consumer(subjects.COMMANDS_STREAM, config),
                              what="command consumer set-up", deadline_s=SUBSCRIBE_RETRY_S)
        return await self._js.pull_subscribe_bind(durable=durable,
                                                  stream=subjects.COMMANDS_STREAM)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then wind down (see the module docstring)."""
        sub = await self._subscribe()
        log.info("consuming commands", subject=subjects.node_commands(self._ctx.node_id))
        async with asyncio.TaskGroup() as group:
            keepalive = group.create_task(self._keep_alive())
            try:
                await self._fetch_until(stop, sub, group)
                await self._wind_down()  # a stop; when cancelled, the group cancels the workers
            finally:
                self._stopping = True
                keepalive.cancel()
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _fetch_until(self, stop: asyncio.Event, sub: JetStreamContext.PullSubscription,
                           group: asyncio.TaskGroup) -> None:
        while not stop.is_set():
            room = MAX_HELD - len(self._held)
            if room <= 0:
                self._room.clear()
                await _first(self._room.wait(), stop.wait())
                continue
            fetch = asyncio.ensure_future(
                sub.fetch(batch=min(room, FETCH_BATCH), timeout=FETCH_TIMEOUT_S))
            # A fetch orphaned by a cancel from outside ends with the connection, and its error
            # must not surface as "Task exception was never retrieved" at exit (seen in CI).
            fetch.add_done_callback(_mark_retrieved)
            try:
                await _first(asyncio.shield(fetch), stop.wait())
            except asyncio.CancelledError:
                fetch.cancel()
                raise
            if not fetch.done():  # stopping: messages it would bring are redelivered later
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await fetch
                break
            try:
                messages = fetch.result()
            except (nats.errors.TimeoutError, TimeoutError):  # nothing to do for a second
                continue
            except (nats.errors.ConnectionClosedError, nats.errors.Error) as exc:
                log.warning("fetching commands failed; retrying", error=str(exc))
                await _first(asyncio.sleep(1.0), stop.wait())
                continue
            for msg in messages:
                self._accept(msg, group)

    def _accept(self, msg: Msg, group: asyncio.TaskGroup) -> None:
        seq = msg.metadata.sequence.stream
        consumer = msg.metadata.consumer or ""
        CONSUMER_PENDING.labels(consumer).set(msg.metadata.num_pending or 0)
        if msg.metadata.num_delivered > 1:
            CONSUMER_REDELIVERIES.labels(consumer).inc()
        if seq in self._held:  # redelivered while we still work on it: ack the newest copy
            log.warning("held command redelivered (in-progress acks too late?)", seq=seq)
            self._held[seq] = msg
            return
        try:
            command = command_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            group.create_task(self._reject(msg, str(exc)[:300]))
            return
        self._held[seq] = msg
        self._on_command(command.vm_id)
        self._ctx.activity.hold(command.vm_id)
        queue = self._queues.get(command.vm_id)
        if queue is None:
            queue = self._queues[command.vm_id] = deque()
            worker = group.create_task(self._work(command.vm_id, queue))
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        queue.append((seq, command))

    async def _work(self, vm_id: str, queue: deque[tuple[int, Command]]) -> None:
        """Run the VM's commands one after the other, acking each when done."""
        try:
            while queue and not self._stopping:
                seq, command = queue[0]
                try:
                    async with self._slots:
                        await handle(self._ctx, command)
                    await self._ctx.failpoints.hit("before_ack")
                except Exception as exc:  # handle() records failures; this is recording failing
                    log.exception("command could not be handled", vm_id=vm_id, seq=seq)
                    await self._retry_or_drop(seq, vm_id, f"{type(exc).__name__}: {exc}")
                else:
                    await self._settle(seq, vm_id, ack=True)
                queue.popleft()
        finally:
            # Stopping (or cancelled): what is left goes back to JetStream for redelivery.
            while queue:
                seq, _ = queue.popleft()
                await self._settle(seq, vm_id, ack=False)
            del self._queues[vm_id]

    async def _settle(self, seq: int, vm_id: str, *, ack: bool) -> None:
        msg = self._held.pop(seq, None)
        if msg is None:  # settled already (cancelled right after its ack)
            return
        self._ctx.activity.release(vm_id)
        self._room.set()
        try:
            if ack:
                await msg.ack_sync(timeout=ACK_TIMEOUT_S)
            else:
                await msg.nak()
        except Exception as exc:  # JetStream redelivers it; every step is idempotent
            log.warning("ack failed", vm_id=vm_id, ack=ack, error=str(exc))

    async def _retry_or_drop(self, seq: int, vm_id: str, problem: str) -> None:
        """Give a failed command back for a later try, or drop it after MAX_DELIVERIES."""
        msg = self._held.pop(seq, None)
        if msg is None:
            return
        self._ctx.activity.release(vm_id)
        self._room.set()
        if msg.metadata.num_delivered < MAX_DELIVERIES:
            try:
                await msg.nak(delay=RETRY_DELAY_S)
            except Exception as exc:
                log.warning("nak failed", vm_id=vm_id, error=str(exc))
            return
        self.rejected += 1
        node_metrics.COMMANDS_DEAD_LETTERED.labels("failed").inc()
        log.error("command dropped after repeated failures", vm_id=vm_id, seq=seq,
                  deliveries=msg.metadata.num_delivered, reason=problem[:300],
                  rejected=self.rejected)
        await self._terminate(msg, f"failed {msg.metadata.num_delivered} times: {problem}")

    async def _terminate(self, msg: Msg, problem: str) -> None:
        """``term()`` the message and republish it on the node's dead-letter subject."""
        seq = msg.metadata.sequence.stream
        try:
            await msg.term()
        except Exception as exc:
            log.warning("terminating a command failed", seq=seq, error=str(exc))
        try:
            await dead_letter(self._nc, self._ctx.node_id, msg.data, reason=problem,
                              stream_seq=seq, rejected=self.rejected)
        except Exception as exc:
            log.warning("dead-lettering a command failed", seq=seq, error=str(exc))

    async def _reject(self, msg: Msg, problem: str) -> None:
        """Terminate a poison message: count, log, dead-letter, record on its VM if named.

        Never raises: a poison message must not stop the agent (this runs in its task group).
        """
        self.rejected += 1
        node_metrics.COMMANDS_DEAD_LETTERED.labels("invalid").inc()
        seq = msg.metadata.sequence.stream
        try:
            envelope = msgspec.json.decode(msg.data, type=_Envelope)
        except (msgspec.DecodeError, msgspec.ValidationError):
            envelope = _Envelope()
        kind = envelope.type[:64] or "unknown"
        # The payload may carry user-data: it goes to the dead-letter subject, never the log.
        log.error("invalid command terminated", reason=problem, seq=seq, type=kind,
                  size=len(msg.data), rejected=self.rejected)
        await self._terminate(msg, problem)
        if is_vm_id(envelope.vm_id):
            error = VmError(code="invalid_command", message=f"invalid command: {problem}",
                            hint="The API and node agent versions may differ; upgrade both.")
            try:
                await record_failure(self._ctx, envelope.vm_id, kind, error, real_state=True)
            except Exception:
                log.exception("recording an invalid command on its VM failed",
                              vm_id=envelope.vm_id)

    async def _keep_alive(self) -> None:
        period = max(0.5, self._ctx.settings.command_ack_wait_s / 3)
        while True:
            await asyncio.sleep(period)
            for msg in list(self._held.values()):
                try:
                    await msg.in_progress()
                except Exception as exc:
                    log.warning("in-progress ack failed", error=str(exc))

    async def _wind_down(self) -> None:
        self._stopping = True
        if not self._workers:
            return
        log.info("waiting for commands in flight", count=len(self._workers))
        _, pending = await asyncio.wait(set(self._workers), timeout=SHUTDOWN_GRACE_S)
        for worker in pending:
            worker.cancel()
        if pending:
            log.warning("abandoned commands in flight (JetStream redelivers them)",
                        count=len(pending))
            await asyncio.wait(pending)


def _mark_retrieved(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _first(*aws: object) -> None:
    """Wait until the first of the awaitables finishes; cancel the others."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]  # type: ignore[call-overload]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
