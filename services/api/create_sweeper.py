"""Nothing a gateway started is left half-done: the create sweeper.

A create writes, in order, the name key, the VM record (``pending``) and the node's command.
The record is the create's outbox: it holds everything the command carries, so once it is
written the create happens, whatever becomes of the gateway that wrote it. A gateway that dies
(or loses NATS) between two steps leaves one of:

- a ``pending`` record and no command: the sweeper publishes the command again once the record
  has stood still for ``LQ_CREATE_SWEEP_AFTER_S`` (the node touches a pending record at least every
  ``images.wait.KEEPALIVE_S`` while it works on it, e.g. while an image downloads). The command
  id is derived from the record's id and ``updated_at``, so several gateways sweeping at once
  publish one message (JetStream de-duplicates ``Nats-Msg-Id``), and the node's create is
  idempotent in any case. Records on a node that is offline wait for it.
- a name key whose VM has no record: freed once it has been seen orphaned, unchanged, for
  ``LQ_CREATE_SWEEP_AFTER_S`` (compare-and-set on its revision: a name re-taken is kept).

Every gateway runs one; the passes are cheap (the watched VM view, one stream-info call for the
names).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import nats.errors
import structlog
from aiohttp import web

from limiquantix.api import app_keys
from limiquantix.common.commands import CreateVm
from limiquantix.common.model import utcnow
from limiquantix.common.publish import send_command
from limiquantix.common.vms import VmRecord, VmState

log = structlog.get_logger()

SWEEPS_PER_BOUND = 6  # passes per LQ_CREATE_SWEEP_AFTER_S: 10 s with the default 60 s
_SWEEP_NAMESPACE = uuid.UUID("6f1c3b1e-3f5e-4a57-9c53-4f2f6e0c1a77")


def resend_id(record: VmRecord) -> str:
    """The command id of a re-sent create: the same for every gateway sweeping this version."""
    return str(uuid.uuid5(_SWEEP_NAMESPACE, f"{record.id}/{record.updated_at.isoformat()}"))


class CreateSweeper:
    """Finishes creates a gateway left half-done (see the module docstring)."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._stale_after_s = app[app_keys.SETTINGS].create_sweep_after_s
        self._orphans: dict[str, tuple[int, float]] = {}  # name -> (revision, first seen)

    async def sweep(self) -> None:
        """One pass: re-send stale creates, free orphaned names."""
        await self._resend_stale_creates()
        await self._free_orphaned_names()

    async def _resend_stale_creates(self) -> None:
        app = self._app
        live = {node.id for node in app[app_keys.NODE_VIEW].live()}
        now = utcnow()
        for record in app[app_keys.VM_VIEW].values():
            if (record.state != VmState.PENDING or record.node not in live
                    or (now - record.updated_at).total_seconds() < self._stale_after_s):
                continue
            command = CreateVm(command_id=resend_id(record), vm_id=record.id)
            await send_command(app[app_keys.JETSTREAM], record.node, command)
            log.warning("create re-sent for a VM pending without progress", vm_id=record.id,
                        node=record.node, pending_since=record.updated_at.isoformat())

    async def _free_orphaned_names(self) -> None:
        view = self._app[app_keys.VM_VIEW]
        store = self._app[app_keys.VM_STORE]
        seen: dict[str, tuple[int, float]] = {}
        for name, vm_id, revision in await store.name_claims():
            if view.get(vm_id) is not None or await store.find(vm_id) is not None:
                continue
            first = self._orphans.get(name)
            since = first[1] if first is not None and first[0] == revision else time.monotonic()
            seen[name] = (revision, since)
            if time.monotonic() - since >= self._stale_after_s:
                if await store.free_name(name, revision):  # False: re-taken meanwhile
                    log.warning("name freed: its VM record was never written", name=name,
                                vm_id=vm_id)
                seen.pop(name, None)
        self._orphans = seen

    async def run(self) -> None:
        """Sweep until cancelled; a failed pass is retried at the next."""
        while True:
            await asyncio.sleep(self._stale_after_s / SWEEPS_PER_BOUND)
            try:
                await self.sweep()
            except (nats.errors.Error, OSError) as exc:
                log.warning("create sweep failed; next pass retries", error=repr(exc))


async def sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    """The gateway's sweeper task, from start-up to shutdown."""
    task = asyncio.create_task(CreateSweeper(app).run(), name="create-sweeper")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
